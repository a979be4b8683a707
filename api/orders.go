package api

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// Limits on an order request.
const (
	maxIdempotencyKeyLen = 200
	maxOrderLines        = 50
	minQuantity          = 1
	maxQuantity          = 100
	maxAddressLen        = 500
	// maxPaymentTokenLen: a card provider's tokens are tens of characters;
	// the token also reaches the gateway's answer and so a decline reason.
	maxPaymentTokenLen = 200
)

// headerIdempotencyKey names the header that makes POST /v1/orders safe to
// retry: the order ID is derived from it.
const headerIdempotencyKey = "Idempotency-Key"

// orderNamespace scopes the name-based UUIDs derived from idempotency keys.
// Changing it would give every retried request a new order: never do.
var orderNamespace = uuid.MustParse("aa8ee817-051d-415f-a985-93bead77f6e9")

// requestHashVersion is part of the hashed canonical request, so that a
// future change of the request shape cannot make an old order's hash match
// a different request by accident.
const requestHashVersion = 1

// placeOrderRequest is the body of POST /v1/orders. It carries no prices:
// the server prices every line from the menu.
type placeOrderRequest struct {
	CustomerID      string      `json:"customer_id"`
	RestaurantID    string      `json:"restaurant_id"`
	Items           []orderLine `json:"items"`
	DeliveryAddress string      `json:"delivery_address"`
	PaymentToken    string      `json:"payment_token"`
}

// orderLine is one requested line.
type orderLine struct {
	MenuItemID string `json:"menu_item_id"`
	Quantity   int    `json:"quantity"`
}

// placedOrder answers POST /v1/orders, first time and on every retry.
type placedOrder struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	AcceptBy   time.Time `json:"accept_by"`
}

// pricedOrder is a validated request with its prices taken from the menu.
type pricedOrder struct {
	restaurant db.Restaurant
	items      []events.OrderItem
	totalCents int64
	// orderExists says an order with the request's ID is recorded already.
	orderExists bool
}

// placeOrder starts an order workflow, or answers for the one an earlier
// request with the same Idempotency-Key started. Every check on the input
// runs before the workflow is started, so bad input never starts one.
func (s *Server) placeOrder(c echo.Context) error {
	ctx := c.Request().Context()
	key, err := idempotencyKey(c.Request())
	if err != nil {
		return err
	}
	var req placeOrderRequest
	body, err := decodeBody(c, &req, false)
	if err != nil {
		var fe *orderflow.Error
		if errors.As(err, &fe) && fe.Code == orderflow.EINVALID {
			return refineItems(body, fe)
		}
		return err
	}
	req.normalize()
	if err := req.validate(); err != nil {
		return err
	}
	orderID := uuid.NewSHA1(orderNamespace, []byte(key)).String()
	hash, err := req.hash()
	if err != nil {
		return err
	}
	priced, err := s.price(ctx, req, uuid.MustParse(orderID))
	if err != nil {
		if _, ok := errors.AsType[*orderflow.Error](err); !ok {
			return err
		}
		// The menu may have changed since a first request with this key
		// started its order (a dish sold out, say), which has not recorded
		// the order yet: its retry is answered for that order, which goes
		// on, not refused as if no order had been placed.
		run, derr := s.describeOrder(ctx, orderID)
		switch {
		case derr != nil:
			return derr
		case run != nil:
			return s.replayOrder(c, orderID, hash, run)
		}
		return err
	}

	// The first request for a key finds no row and starts the workflow
	// straight away: one round trip to Temporal per order. A retry finds
	// the row (or, while the first workflow has not written it yet, the
	// start fails as already started) and is answered from the first
	// order's workflow.
	if priced.orderExists {
		run, err := s.describeOrder(ctx, orderID)
		if err != nil {
			return err
		}
		if run != nil {
			return s.replayOrder(c, orderID, hash, run)
		}
		// A row, yet no workflow: the workflow's history outlived its
		// retention and was deleted. Starting again would make a second
		// order with the same ID, and the request can no longer be
		// compared with the first.
		return &orderflow.Error{Code: orderflow.ECONFLICT, Field: headerIdempotencyKey,
			Message: fmt.Sprintf("already used by order %s, which can no longer be compared with this request; use a new key", orderID)}
	}

	timeout := s.acceptTimeout
	if timeout <= 0 {
		timeout = time.Duration(priced.restaurant.AcceptTimeoutSeconds) * time.Second
	}
	if timeout <= 0 {
		timeout = workflows.DefaultAcceptTimeout
	}
	placedAt := s.now().UTC().Truncate(time.Millisecond)
	in := workflows.OrderInput{
		Order: activities.NewOrder{
			OrderID:         orderID,
			CustomerID:      req.CustomerID,
			RestaurantID:    req.RestaurantID,
			DeliveryAddress: req.DeliveryAddress,
			Items:           priced.items,
			TotalCents:      priced.totalCents,
			PlacedAt:        placedAt,
			AcceptBy:        placedAt.Add(timeout),
		},
		PaymentToken:  req.PaymentToken,
		AcceptTimeout: timeout,
		DeliverySLA:   s.deliverySLA,
	}
	opts := client.StartWorkflowOptions{
		ID:        orderflow.OrderWorkflowID(orderID),
		TaskQueue: s.taskQueue,
		// A completed order's ID is never reused and a running one is never
		// joined: a retry must find the first order, not start or attach.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this the SDK swallows "already started" and hands back
		// the other request's run as if this one had started it.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		// When this process also runs the worker (orderflow dev), the
		// server hands the first workflow task straight back in the start
		// response instead of through a poll: one round trip less per
		// order. Without a local worker the SDK does not ask for it.
		EnableEagerStart: true,

		Memo:          StartMemo(in.Order, hash),
		StaticSummary: StartSummary(in.Order, priced.restaurant.Name),
	}
	sctx, done := s.temporalCall(ctx, temporalTimeout)
	defer done()
	_, err = s.temporal.ExecuteWorkflow(sctx, opts, workflows.OrderWorkflowName, in)
	err = callError(sctx, err)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		// A retry with the same key whose first request started the
		// workflow, which has not recorded the order yet (or which ended
		// before it could).
		run, err := s.describeOrder(ctx, orderID)
		if err != nil {
			return err
		}
		if run == nil {
			return orderflow.Errorf(orderflow.EUNAVAILABLE, "the order is being started by another request; retry")
		}
		return s.replayOrder(c, orderID, hash, run)
	case err != nil:
		return temporalError("start order workflow", err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/orders/"+orderID)
	return c.JSON(http.StatusCreated, placedOrder{
		ID:         orderID,
		Status:     string(orderflow.StatusPlaced),
		TotalCents: priced.totalCents,
		AcceptBy:   in.Order.AcceptBy,
	})
}

// replayOrder answers a POST whose Idempotency-Key already has an order:
// the same order when the request is the same, 422 when it is not.
func (s *Server) replayOrder(c echo.Context, orderID, hash string, run *orderRun) error {
	if run.Memo.RequestHash != hash {
		return &orderflow.Error{Code: orderflow.EUNPROCESSABLE, Field: headerIdempotencyKey,
			Message: "reused with a different request"}
	}
	out := placedOrder{
		ID:         orderID,
		Status:     string(orderflow.StatusPlaced),
		TotalCents: run.Memo.TotalCents,
		AcceptBy:   run.Memo.AcceptBy,
	}
	row, err := s.store.GetOrder(c.Request().Context(), uuid.MustParse(orderID))
	switch {
	case err == nil:
		out.Status, out.TotalCents, out.AcceptBy = row.Status, row.TotalCents, row.AcceptBy.UTC()
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("get order: %w", err)
	case !run.running():
		st, _ := closedStatus(run.Status)
		out.Status = string(st)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/orders/"+orderID)
	return c.JSON(http.StatusOK, out)
}

// idempotencyKey reads the required Idempotency-Key header.
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get(headerIdempotencyKey)
	switch n := utf8.RuneCountInString(key); {
	case len(r.Header.Values(headerIdempotencyKey)) > 1:
		return "", orderflow.FieldErrorf(headerIdempotencyKey, "header is given more than once: send one key")
	case strings.TrimSpace(key) == "":
		return "", orderflow.FieldErrorf(headerIdempotencyKey, "header is required: a unique key per order, reused only to retry the same request")
	case n > maxIdempotencyKeyLen:
		return "", orderflow.FieldErrorf(headerIdempotencyKey, "must be at most %d characters", maxIdempotencyKeyLen)
	}
	return key, nil
}

// refineItems gives a decode error inside items the index of the line at
// fault ("items[1].quantity"): encoding/json names the path without array
// indices, and an unknown field without any path. It re-decodes the lines
// one by one only on this error path.
func refineItems(body []byte, fe *orderflow.Error) error {
	if fe.Field == "body" {
		return fe
	}
	var raw struct {
		Items []json.RawMessage `json:"items"`
	}
	if json.Unmarshal(body, &raw) != nil {
		return fe
	}
	for i, item := range raw.Items {
		var line orderLine
		err := decodeStrict(item, &line)
		if err == nil {
			continue
		}
		var ie *orderflow.Error
		if !errors.As(err, &ie) {
			continue
		}
		path := fmt.Sprintf("items[%d]", i)
		if ie.Field != "body" {
			path += "." + ie.Field
		}
		same := false
		switch {
		case fe.Message == msgUnknownField:
			same = ie.Message == msgUnknownField && ie.Field == fe.Field
		case ie.Field == "body":
			same = fe.Field == "items"
		default:
			same = fe.Field == "items."+ie.Field
		}
		if same {
			return orderflow.FieldErrorf(path, "%s", ie.Message)
		}
	}
	return fe
}

// normalize trims what a client may pad by accident. IDs are compared
// exactly, so only free text is trimmed.
func (r *placeOrderRequest) normalize() {
	r.DeliveryAddress = strings.TrimSpace(r.DeliveryAddress)
}

// validate checks everything that needs no database.
func (r *placeOrderRequest) validate() error {
	switch {
	case strings.TrimSpace(r.CustomerID) == "":
		return orderflow.FieldErrorf("customer_id", "is required")
	case strings.TrimSpace(r.RestaurantID) == "":
		return orderflow.FieldErrorf("restaurant_id", "is required")
	case len(r.Items) == 0:
		return orderflow.FieldErrorf("items", "must list at least one item")
	case len(r.Items) > maxOrderLines:
		return orderflow.FieldErrorf("items", "must list at most %d lines", maxOrderLines)
	}
	for i, it := range r.Items {
		switch {
		case strings.TrimSpace(it.MenuItemID) == "":
			return orderflow.FieldErrorf(fmt.Sprintf("items[%d].menu_item_id", i), "is required")
		case it.Quantity < minQuantity || it.Quantity > maxQuantity:
			return orderflow.FieldErrorf(fmt.Sprintf("items[%d].quantity", i), "must be between %d and %d", minQuantity, maxQuantity)
		}
	}
	switch {
	case r.DeliveryAddress == "":
		return orderflow.FieldErrorf("delivery_address", "is required")
	case utf8.RuneCountInString(r.DeliveryAddress) > maxAddressLen:
		return orderflow.FieldErrorf("delivery_address", "must be at most %d characters", maxAddressLen)
	case strings.TrimSpace(r.PaymentToken) == "":
		return orderflow.FieldErrorf("payment_token", "is required")
	case utf8.RuneCountInString(r.PaymentToken) > maxPaymentTokenLen:
		return orderflow.FieldErrorf("payment_token", "must be at most %d characters", maxPaymentTokenLen)
	}
	return nil
}

// hash is the hex SHA-256 of the normalized request as canonical JSON:
// fixed field order, lines in request order, no insignificant whitespace.
func (r *placeOrderRequest) hash() (string, error) {
	canonical, err := json.Marshal(struct {
		Version int `json:"v"`
		*placeOrderRequest
	}{requestHashVersion, r})
	if err != nil {
		return "", fmt.Errorf("encode request: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// price checks the request against the database and prices every line
// from the menu, in one round trip that also tells whether orderID exists
// already. Unknown references are the client's error (EINVALID).
func (s *Server) price(ctx context.Context, r placeOrderRequest, orderID uuid.UUID) (pricedOrder, error) {
	ids := make([]string, len(r.Items))
	for i, it := range r.Items {
		ids[i] = it.MenuItemID
	}
	rows, err := s.store.GetPlacementRefs(ctx, db.GetPlacementRefsParams{
		CustomerID: r.CustomerID, OrderID: orderID, RestaurantID: r.RestaurantID, MenuItemIds: ids,
	})
	if err != nil {
		return pricedOrder{}, fmt.Errorf("get customer, restaurant and menu items: %w", err)
	}
	if len(rows) == 0 { // the query returns at least one row, always
		return pricedOrder{}, errors.New("get customer, restaurant and menu items: no row")
	}
	refs := rows[0]
	if refs.OrderFound {
		// A retry: it is answered for the order the key already has, and
		// compared with its request, whatever the menu says now.
		return pricedOrder{orderExists: true}, nil
	}
	if !refs.CustomerFound {
		return pricedOrder{}, orderflow.FieldErrorf("customer_id", "unknown customer %q", r.CustomerID)
	}
	if !refs.RestaurantFound {
		return pricedOrder{}, orderflow.FieldErrorf("restaurant_id", "unknown restaurant %q", r.RestaurantID)
	}
	rest := db.Restaurant{ID: r.RestaurantID, Name: refs.RestaurantName, AcceptTimeoutSeconds: refs.RestaurantAcceptTimeoutSeconds}
	byID := make(map[string]db.MenuItem, len(rows))
	for _, row := range rows {
		if row.MenuItemFound {
			byID[row.MenuItemID] = db.MenuItem{
				ID: row.MenuItemID, RestaurantID: row.MenuItemRestaurantID, Name: row.MenuItemName,
				PriceCents: row.MenuItemPriceCents, Available: row.MenuItemAvailable,
			}
		}
	}
	p := pricedOrder{restaurant: rest, items: make([]events.OrderItem, len(r.Items))}
	for i, it := range r.Items {
		field := fmt.Sprintf("items[%d].menu_item_id", i)
		m, ok := byID[it.MenuItemID]
		switch {
		case !ok:
			return pricedOrder{}, orderflow.FieldErrorf(field, "unknown menu item %q", it.MenuItemID)
		case m.RestaurantID != r.RestaurantID:
			return pricedOrder{}, orderflow.FieldErrorf(field, "menu item %q is not on the menu of restaurant %q", it.MenuItemID, r.RestaurantID)
		case !m.Available:
			return pricedOrder{}, orderflow.FieldErrorf(field, "menu item %q is not available", it.MenuItemID)
		}
		qty := int64(it.Quantity)
		if m.PriceCents > (math.MaxInt64-p.totalCents)/qty {
			return pricedOrder{}, orderflow.FieldErrorf(fmt.Sprintf("items[%d].quantity", i), "the order's total would exceed %d cents", int64(math.MaxInt64))
		}
		p.totalCents += m.PriceCents * qty
		p.items[i] = events.OrderItem{MenuItemID: m.ID, Name: m.Name, UnitPriceCents: m.PriceCents, Quantity: int32(it.Quantity)}
	}
	return p, nil
}

// formatCents renders cents as a decimal amount ("24.50").
func formatCents(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}

// orderIDParam reads the :id path parameter. Anything but a UUID in its
// canonical form cannot name an order, so it is a 404, not a 400.
func orderIDParam(c echo.Context) (uuid.UUID, error) {
	raw, ok := pathParam(c, "id")
	id, err := uuid.Parse(raw)
	if !ok || err != nil || len(raw) != 36 {
		return uuid.UUID{}, orderflow.Errorf(orderflow.ENOTFOUND, "no order %q", raw)
	}
	return id, nil
}

// orderView answers GET /v1/orders/{id}.
type orderView struct {
	ID              string             `json:"id"`
	Status          string             `json:"status"`
	Reason          string             `json:"reason"`
	CustomerID      string             `json:"customer_id"`
	RestaurantID    string             `json:"restaurant_id"`
	DeliveryAddress string             `json:"delivery_address"`
	Items           []orderItemView    `json:"items"`
	TotalCents      int64              `json:"total_cents"`
	Payment         paymentView        `json:"payment"`
	AcceptBy        time.Time          `json:"accept_by"`
	CreatedAt       time.Time          `json:"created_at"`
	Timeline        []timelineView     `json:"timeline"`
	Notifications   []notificationView `json:"notifications"`
	// Source says whether the status came from the running workflow or
	// from the database read model (which may lag it slightly).
	Source string `json:"source"`
}

type orderItemView struct {
	MenuItemID     string `json:"menu_item_id"`
	Name           string `json:"name"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	Quantity       int32  `json:"quantity"`
	LineTotalCents int64  `json:"line_total_cents"`
}

type paymentView struct {
	Status          string `json:"status"`
	AuthorizationID string `json:"authorization_id"`
}

type timelineView struct {
	Version   int64     `json:"version"`
	EventType string    `json:"event_type"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

type notificationView struct {
	Recipient string    `json:"recipient"`
	Kind      string    `json:"kind"`
	Message   string    `json:"message"`
	At        time.Time `json:"at"`
}

// Sources of an order view's status.
const (
	sourceWorkflow = "workflow"
	sourceDatabase = "database"
)

// getOrder reads the order's row and, while its workflow runs, the
// workflow's own status, which is never behind the row. With Temporal down
// the row alone answers; with no row yet the workflow's memo does.
func (s *Server) getOrder(c echo.Context) error {
	ctx := c.Request().Context()
	id, err := orderIDParam(c)
	if err != nil {
		return err
	}
	view, found, err := s.readOrder(ctx, id)
	if err != nil {
		return err
	}
	run, err := s.describeOrder(ctx, id.String())
	if err != nil {
		if !found {
			return err
		}
		s.logger.Warn("describe order workflow failed; answering from the database", "order_id", id, "err", err)
		run = nil
	}
	if !found && run == nil {
		return orderflow.Errorf(orderflow.ENOTFOUND, "no order %q", id)
	}
	if !found {
		// The workflow has not recorded the order yet (or never will).
		m := run.Memo
		view = orderView{
			ID:           id.String(),
			Status:       string(orderflow.StatusPlaced),
			CustomerID:   m.CustomerID,
			RestaurantID: m.RestaurantID,
			TotalCents:   m.TotalCents,
			AcceptBy:     m.AcceptBy,
			CreatedAt:    m.PlacedAt,
			Payment:      paymentView{Status: string(orderflow.PaymentPending)},
			Source:       sourceWorkflow,
		}
		if view.CreatedAt.IsZero() {
			view.CreatedAt = run.StartTime
		}
		if !run.running() {
			st, reason := closedStatus(run.Status)
			view.Status, view.Reason = string(st), reason
		}
	}
	if run != nil && run.running() {
		if sv, ok := s.queryStatus(ctx, id.String()); ok {
			if sv.Status != view.Status {
				// The query waits for the workflow's task, whose steps
				// commit meanwhile: read the row again, so that the
				// items, timeline and payment go with the status (the
				// order recorded since, or moved on).
				if again, ok, err := s.readOrder(ctx, id); err == nil && ok {
					view = again
				}
			}
			view.Status, view.Reason, view.Source = sv.Status, sv.Reason, sourceWorkflow
			if sv.PaymentStatus != "" {
				view.Payment.Status = sv.PaymentStatus
			}
			if view.AcceptBy.IsZero() {
				view.AcceptBy = sv.AcceptBy
			}
		}
	}
	view.Items = nonNil(view.Items)
	view.Timeline = nonNil(view.Timeline)
	view.Notifications = nonNil(view.Notifications)
	return c.JSON(http.StatusOK, view)
}

// readOrder builds the order's view from the read model; found is false
// when the order has no row yet.
func (s *Server) readOrder(ctx context.Context, id uuid.UUID) (view orderView, found bool, err error) {
	row, err := s.store.GetOrder(ctx, id)
	if errors.Is(err, sql.ErrNoRows) {
		return orderView{}, false, nil
	} else if err != nil {
		return orderView{}, false, fmt.Errorf("get order: %w", err)
	}
	view = orderView{
		ID:              row.ID.String(),
		Status:          row.Status,
		Reason:          row.Reason,
		CustomerID:      row.CustomerID,
		RestaurantID:    row.RestaurantID,
		DeliveryAddress: row.DeliveryAddress,
		TotalCents:      row.TotalCents,
		AcceptBy:        row.AcceptBy.UTC(),
		CreatedAt:       row.CreatedAt.UTC(),
		Payment:         paymentView{Status: string(orderflow.PaymentPending)},
		Source:          sourceDatabase,
	}
	items, err := s.store.ListOrderItems(ctx, id)
	if err != nil {
		return orderView{}, false, fmt.Errorf("list order items: %w", err)
	}
	for _, it := range items {
		view.Items = append(view.Items, orderItemView{
			MenuItemID:     it.MenuItemID,
			Name:           it.Name,
			UnitPriceCents: it.UnitPriceCents,
			Quantity:       it.Quantity,
			LineTotalCents: it.UnitPriceCents * int64(it.Quantity),
		})
	}
	timeline, err := s.store.ListOrderTimeline(ctx, id)
	if err != nil {
		return orderView{}, false, fmt.Errorf("list order timeline: %w", err)
	}
	for _, t := range timeline {
		view.Timeline = append(view.Timeline, timelineView{
			Version: t.Version, EventType: t.EventType, Status: t.Status, Reason: t.Reason, At: t.OccurredAt.UTC(),
		})
	}
	notes, err := s.store.ListOrderNotifications(ctx, id)
	if err != nil {
		return orderView{}, false, fmt.Errorf("list order notifications: %w", err)
	}
	for _, n := range notes {
		view.Notifications = append(view.Notifications, notificationView{
			Recipient: n.Recipient, Kind: n.Kind, Message: n.Message, At: n.CreatedAt.UTC(),
		})
	}
	pay, err := s.store.GetPayment(ctx, id)
	switch {
	case err == nil:
		view.Payment = paymentView{Status: pay.Status, AuthorizationID: pay.AuthorizationID}
	case !errors.Is(err, sql.ErrNoRows):
		return orderView{}, false, fmt.Errorf("get payment: %w", err)
	}
	return view, true, nil
}

// eventView is one outbox event of an order.
type eventView struct {
	EventID     string          `json:"event_id"`
	Type        string          `json:"type"`
	CEType      string          `json:"ce_type"`
	Sequence    int64           `json:"sequence"`
	OccurredAt  time.Time       `json:"occurred_at"`
	PublishedAt *time.Time      `json:"published_at"`
	Payload     json.RawMessage `json:"payload"`
}

// listOrderEvents lists the order's outbox events in aggregate_version
// order, which is the order consumers see them in.
func (s *Server) listOrderEvents(c echo.Context) error {
	ctx := c.Request().Context()
	id, err := orderIDParam(c)
	if err != nil {
		return err
	}
	rows, err := s.store.ListAggregateOutboxEvents(ctx, db.ListAggregateOutboxEventsParams{
		AggregateType: events.AggregateOrder, AggregateID: id.String(),
	})
	if err != nil {
		return fmt.Errorf("list outbox events: %w", err)
	}
	if len(rows) == 0 {
		if err := s.orderExists(ctx, id); err != nil {
			return err
		}
	}
	out := make([]eventView, 0, len(rows))
	for _, r := range rows {
		ev := eventView{
			EventID:    r.EventID.String(),
			Type:       r.EventType,
			CEType:     events.CEType(r.EventType),
			Sequence:   r.AggregateVersion,
			OccurredAt: r.OccurredAt.UTC(),
			Payload:    r.Payload,
		}
		if r.PublishedAt.Valid {
			t := r.PublishedAt.Time.UTC()
			ev.PublishedAt = &t
		}
		out = append(out, ev)
	}
	return c.JSON(http.StatusOK, out)
}

// orderExists returns nil when the order has a row or a workflow, and an
// ENOTFOUND error when it has neither.
func (s *Server) orderExists(ctx context.Context, id uuid.UUID) error {
	_, err := s.store.GetOrder(ctx, id)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("get order: %w", err)
	}
	run, err := s.describeOrder(ctx, id.String())
	switch {
	case err != nil:
		return err
	case run == nil:
		return orderflow.Errorf(orderflow.ENOTFOUND, "no order %q", id)
	}
	return nil
}

// nonNil makes an absent list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
