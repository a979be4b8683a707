package api_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// orderBody is a valid order request, changed by edit. It is built as a
// map so that a case can add, remove or mistype any member.
func orderBody(tb testing.TB, edit func(m map[string]any)) string {
	tb.Helper()
	m := map[string]any{
		"customer_id":   customerID,
		"restaurant_id": pizzaID,
		"items": []any{
			map[string]any{"menu_item_id": margherita, "quantity": 2},
			map[string]any{"menu_item_id": pepperoni, "quantity": 1},
		},
		"delivery_address": "1 Main St",
		"payment_token":    "tok_visa",
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("encode body: %v", err)
	}
	return string(b)
}

// item returns the i-th line of a body map, to edit it in place.
func item(m map[string]any, i int) map[string]any {
	return m["items"].([]any)[i].(map[string]any)
}

// placed is the body of a 201 or 200 from POST /v1/orders.
type placed struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	AcceptBy   time.Time `json:"accept_by"`
}

// TestPlaceOrderRejectsBadInput proves every bad input is a 400 (or 413)
// problem naming the field, and never reaches Temporal: the mock client
// has no expectations, so a Describe or a start would fail the test.
func TestPlaceOrderRejectsBadInput(t *testing.T) {
	f := newFixture(t)
	// A request the menu refuses is first looked for as a retry of an
	// order its key started; here there is none. Nothing may be started.
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").
		Return(nil, serviceerror.NewNotFound("workflow not found")).Maybe()
	key := header("Idempotency-Key", "bad-input")
	tooMany := make([]any, 51)
	for i := range tooMany {
		tooMany[i] = map[string]any{"menu_item_id": margherita, "quantity": 1}
	}
	huge := orderBody(t, func(m map[string]any) { m["delivery_address"] = strings.Repeat("x", 70<<10) })

	tests := []struct {
		name    string
		body    string
		header  http.Header
		chunked bool // no Content-Length: the limit must hold while reading
		// readErr, when set, ends the body's read with it after its first half.
		readErr error
		// contentType replaces application/json when set; "-" sends none.
		contentType string
		status      int
		field       string
		code        string // when not the status's usual one
		detail      string // part of the problem's detail, when set
	}{
		{name: "text/plain body", body: orderBody(t, nil), contentType: "text/plain", status: 415, field: "Content-Type", code: "unsupported_media_type"},
		{name: "form body", body: orderBody(t, nil), contentType: "application/x-www-form-urlencoded", status: 415, field: "Content-Type", code: "unsupported_media_type"},
		{name: "no Content-Type", body: orderBody(t, nil), contentType: "-", status: 415, field: "Content-Type", code: "unsupported_media_type"},
		{name: "Content-Type not a media type", body: orderBody(t, nil), contentType: ";;;", status: 415, field: "Content-Type", code: "unsupported_media_type"},
		{name: "problem+json body", body: orderBody(t, nil), contentType: "application/problem+json", status: 415, field: "Content-Type", code: "unsupported_media_type"},
		{name: "JSON in latin1", body: orderBody(t, nil), contentType: "application/json; charset=latin1", status: 415, field: "Content-Type", code: "unsupported_media_type"},
		// encoding/json would store these as U+FFFD without a word.
		{name: "invalid UTF-8 in the address", body: strings.Replace(orderBody(t, nil), "1 Main St", "1 Main \xff St", 1), status: 400, field: "delivery_address", detail: "must be valid UTF-8 (found bytes that are not UTF-8)"},
		{name: "unpaired surrogate in the address", body: strings.Replace(orderBody(t, nil), "1 Main St", `1 Main \ud800 St`, 1), status: 400, field: "delivery_address", detail: `unpaired surrogate escape \ud800`},
		{name: "high surrogate then another escape", body: strings.Replace(orderBody(t, nil), "1 Main St", `1 Main \ud83d\u0041`, 1), status: 400, field: "delivery_address", detail: `unpaired surrogate escape \ud83d`},
		// No field's name: unknown, as it reads once decoded.
		{name: "invalid UTF-8 in a field name", body: strings.Replace(orderBody(t, nil), `"payment_token"`, "\"payment_\xff\"", 1), status: 400, field: "payment_\ufffd"},
		{name: "malformed JSON", body: `{"customer_id":`, status: 400, field: "body"},
		{name: "not JSON", body: `customer_id=c_ada`, status: 400, field: "body"},
		{name: "empty body", body: ``, status: 400, field: "body"},
		{name: "JSON array", body: `[]`, status: 400, field: "body"},
		{name: "trailing data", body: orderBody(t, nil) + `{}`, status: 400, field: "body"},
		{name: "unknown field", body: orderBody(t, func(m map[string]any) { m["total_cents"] = 1 }), status: 400, field: "total_cents"},
		{name: "unknown field in a line", body: orderBody(t, func(m map[string]any) { item(m, 1)["unit_price_cents"] = 1 }), status: 400, field: "items[1].unit_price_cents"},
		{name: "wrong type", body: orderBody(t, func(m map[string]any) { m["customer_id"] = 42 }), status: 400, field: "customer_id"},
		{name: "wrong type in a line", body: orderBody(t, func(m map[string]any) { item(m, 1)["quantity"] = "two" }), status: 400, field: "items[1].quantity"},
		{name: "fractional quantity", body: orderBody(t, func(m map[string]any) { item(m, 0)["quantity"] = 1.5 }), status: 400, field: "items[0].quantity"},
		{name: "items not an array", body: orderBody(t, func(m map[string]any) { m["items"] = map[string]any{} }), status: 400, field: "items"},
		{name: "line not an object", body: orderBody(t, func(m map[string]any) { m["items"] = []any{1} }), status: 400, field: "items[0]"},
		{name: "no items", body: orderBody(t, func(m map[string]any) { m["items"] = []any{} }), status: 400, field: "items"},
		{name: "NUL in the address", body: orderBody(t, func(m map[string]any) { m["delivery_address"] = "1 Main\x00St" }), status: 400, field: "delivery_address"},
		{name: "NUL in a menu item", body: orderBody(t, func(m map[string]any) { item(m, 1)["menu_item_id"] = "m_\x00" }), status: 400, field: "items[1].menu_item_id"},
		{name: "control character in the customer", body: orderBody(t, func(m map[string]any) { m["customer_id"] = "c_\x1bada" }), status: 400, field: "customer_id"},
		{name: "items missing", body: orderBody(t, func(m map[string]any) { delete(m, "items") }), status: 400, field: "items"},
		{name: "too many lines", body: orderBody(t, func(m map[string]any) { m["items"] = tooMany }), status: 400, field: "items"},
		{name: "quantity 0", body: orderBody(t, func(m map[string]any) { item(m, 0)["quantity"] = 0 }), status: 400, field: "items[0].quantity"},
		{name: "quantity 101", body: orderBody(t, func(m map[string]any) { item(m, 1)["quantity"] = 101 }), status: 400, field: "items[1].quantity"},
		{name: "missing menu item id", body: orderBody(t, func(m map[string]any) { delete(item(m, 0), "menu_item_id") }), status: 400, field: "items[0].menu_item_id"},
		{name: "missing restaurant", body: orderBody(t, func(m map[string]any) { delete(m, "restaurant_id") }), status: 400, field: "restaurant_id"},
		{name: "unknown restaurant", body: orderBody(t, func(m map[string]any) { m["restaurant_id"] = "r_nope" }), status: 400, field: "restaurant_id"},
		{name: "unknown menu item", body: orderBody(t, func(m map[string]any) { item(m, 1)["menu_item_id"] = "m_nope" }), status: 400, field: "items[1].menu_item_id"},
		{name: "item from another restaurant", body: orderBody(t, func(m map[string]any) { item(m, 1)["menu_item_id"] = nigiri }), status: 400, field: "items[1].menu_item_id"},
		{name: "total over the largest amount", body: orderBody(t, func(m map[string]any) {
			m["restaurant_id"] = sushiID
			m["items"] = []any{map[string]any{"menu_item_id": nigiri, "quantity": 1}, map[string]any{"menu_item_id": goldLeaf, "quantity": 2}}
		}), status: 400, field: "items[1].quantity", detail: "total"},
		{name: "unavailable item", body: orderBody(t, func(m map[string]any) { item(m, 0)["menu_item_id"] = soldOut }), status: 400, field: "items[0].menu_item_id"},
		{name: "missing customer", body: orderBody(t, func(m map[string]any) { delete(m, "customer_id") }), status: 400, field: "customer_id"},
		{name: "unknown customer", body: orderBody(t, func(m map[string]any) { m["customer_id"] = "c_nope" }), status: 400, field: "customer_id"},
		{name: "blank address", body: orderBody(t, func(m map[string]any) { m["delivery_address"] = "  \t " }), status: 400, field: "delivery_address"},
		{name: "address too long", body: orderBody(t, func(m map[string]any) { m["delivery_address"] = strings.Repeat("a", 501) }), status: 400, field: "delivery_address"},
		{name: "missing payment token", body: orderBody(t, func(m map[string]any) { delete(m, "payment_token") }), status: 400, field: "payment_token"},
		{name: "body over 64 KiB", body: huge, status: 413, field: "body"},
		{name: "body over 64 KiB without Content-Length", body: huge, chunked: true, status: 413, field: "body"},
		{name: "field name in other case", body: orderBody(t, func(m map[string]any) { delete(m, "customer_id"); m["Customer_ID"] = "c_ada" }), status: 400, field: "Customer_ID"},
		{name: "field again in other case", body: orderBody(t, func(m map[string]any) { m["CUSTOMER_ID"] = "c_alan" }), status: 400, field: "CUSTOMER_ID"},
		{name: "field in other case in a line", body: orderBody(t, func(m map[string]any) { q := item(m, 1); q["Quantity"] = q["quantity"]; delete(q, "quantity") }), status: 400, field: "items[1].Quantity"},
		{name: "duplicate field", body: strings.Replace(orderBody(t, nil), `"customer_id":"`+customerID+`"`, `"customer_id":"`+customerID+`","customer_id":"`+customerID+`"`, 1), status: 400, field: "customer_id"},
		{name: "duplicate field in a line", body: strings.Replace(orderBody(t, nil), `"quantity":2`, `"quantity":2,"quantity":3`, 1), status: 400, field: "items[0].quantity"},
		{name: "null body", body: `null`, status: 400, field: "body"},
		{name: "payment token too long", body: orderBody(t, func(m map[string]any) { m["payment_token"] = "tok_" + strings.Repeat("z", 300) }), status: 400, field: "payment_token"},
		{name: "field with an empty name", body: orderBody(t, func(m map[string]any) { m[""] = 1 }), status: 400, field: `""`},
		{name: "field with an empty name in a line", body: orderBody(t, func(m map[string]any) { item(m, 1)[""] = 1 }), status: 400, field: `items[1].""`},
		// The read errors name the connection's addresses, as net/http's do.
		{name: "body that stops arriving", body: orderBody(t, nil), readErr: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, status: 408, field: "body", code: "request_timeout", detail: "did not arrive within 30s"},
		{name: "body cut short", body: orderBody(t, nil), readErr: io.ErrUnexpectedEOF, status: 400, field: "body", detail: "ended before it was complete"},
		{name: "body read fails", body: orderBody(t, nil), readErr: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, status: 400, field: "body", detail: "could not read the request body"},
		{name: "missing Idempotency-Key", body: orderBody(t, nil), header: http.Header{}, status: 400, field: "Idempotency-Key"},
		{name: "two Idempotency-Keys", body: orderBody(t, nil), header: http.Header{"Idempotency-Key": {"k-a", "k-b"}}, status: 400, field: "Idempotency-Key"},
		{name: "blank Idempotency-Key", body: orderBody(t, nil), header: header("Idempotency-Key", "   "), status: 400, field: "Idempotency-Key"},
		{name: "Idempotency-Key too long", body: orderBody(t, nil), header: header("Idempotency-Key", strings.Repeat("k", 201)), status: 400, field: "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bind(t)
			h := tt.header
			if h == nil {
				h = key
			}
			req := newRequest(t, http.MethodPost, "/v1/orders", tt.body, h)
			if tt.chunked {
				req.ContentLength = -1
			}
			if tt.readErr != nil {
				req.Body = io.NopCloser(io.MultiReader(strings.NewReader(tt.body[:len(tt.body)/2]), iotest.ErrReader(tt.readErr)))
			}
			switch tt.contentType {
			case "":
			case "-":
				req.Header.Del("Content-Type")
			default:
				req.Header.Set("Content-Type", tt.contentType)
			}
			p := wantProblem(t, f.serve(req), tt.status, tt.field)
			wantCode := orderflow.EINVALID
			switch {
			case tt.code != "":
				wantCode = tt.code
			case tt.status == http.StatusRequestEntityTooLarge:
				wantCode = "too_large"
			}
			if p.Code != wantCode {
				t.Errorf("code = %q, want %q", p.Code, wantCode)
			}
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.detail)
			}
			if tt.readErr != nil && strings.Contains(p.Detail, "tcp") {
				t.Errorf("detail = %q names the connection", p.Detail)
			}
		})
	}
}

// TestPlaceOrderStartsWorkflow checks the start: ID, policies, memo and an
// input priced from the menu, with the accept window of the restaurant or
// of the override.
func TestPlaceOrderStartsWorkflow(t *testing.T) {
	tests := []struct {
		name        string
		override    time.Duration
		sla         time.Duration
		wantTimeout time.Duration
		wantSLA     time.Duration
	}{
		{name: "restaurant window", wantTimeout: pizzaWindow, wantSLA: workflows.DefaultDeliverySLA},
		{name: "override", override: 90 * time.Second, sla: 20 * time.Minute, wantTimeout: 90 * time.Second, wantSLA: 20 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A first request goes straight to the start: no Describe.
			f := newFixture(t, func(c *api.Config) { c.AcceptTimeout, c.DeliverySLA = tt.override, tt.sla })
			var (
				opts client.StartWorkflowOptions
				in   workflows.OrderInput
			)
			f.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
				Run(func(args mock.Arguments) {
					opts = args.Get(1).(client.StartWorkflowOptions)
					in = args.Get(3).(workflows.OrderInput)
				}).
				Return(&mocks.WorkflowRun{}, nil).Once()

			body := orderBody(t, func(m map[string]any) { m["delivery_address"] = "  1 Main St \n" })
			rec := f.do(t, http.MethodPost, "/v1/orders", body, header("Idempotency-Key", "key-1"))
			var got placed
			decode(t, rec, http.StatusCreated, &got)

			id, err := uuid.Parse(got.ID)
			if err != nil || id.Version() != 5 {
				t.Fatalf("id = %q, want a name-based (v5) UUID", got.ID)
			}
			if loc := rec.Header().Get("Location"); loc != "/v1/orders/"+got.ID {
				t.Errorf("Location = %q", loc)
			}
			placedAt := testNow.Truncate(time.Millisecond)
			wantAcceptBy := placedAt.Add(tt.wantTimeout)
			if got.Status != "placed" || got.TotalCents != 3900 || !got.AcceptBy.Equal(wantAcceptBy) {
				t.Errorf("response = %+v, want placed, 3900, accept_by %v", got, wantAcceptBy)
			}

			if opts.ID != "order:"+got.ID {
				t.Errorf("workflow ID = %q, want order:%s", opts.ID, got.ID)
			}
			if opts.TaskQueue != "orders-test" {
				t.Errorf("task queue = %q", opts.TaskQueue)
			}
			if opts.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
				opts.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL ||
				!opts.WorkflowExecutionErrorWhenAlreadyStarted {
				t.Errorf("policies = %v / %v / error-when-started %v, want reject duplicate / fail / true",
					opts.WorkflowIDReusePolicy, opts.WorkflowIDConflictPolicy, opts.WorkflowExecutionErrorWhenAlreadyStarted)
			}
			if h, _ := opts.Memo["request_hash"].(string); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(h) {
				t.Errorf("memo request_hash = %q, want a hex SHA-256", h)
			}
			if want := "order 39.00 USD at Pizza Place for c_ada"; opts.StaticSummary != want {
				t.Errorf("summary = %q, want %q", opts.StaticSummary, want)
			}

			o := in.Order
			wantItems := []events.OrderItem{
				{MenuItemID: margherita, Name: "Margherita", UnitPriceCents: 1250, Quantity: 2},
				{MenuItemID: pepperoni, Name: "Pepperoni", UnitPriceCents: 1400, Quantity: 1},
			}
			if o.OrderID != got.ID || o.CustomerID != customerID || o.RestaurantID != pizzaID || o.DeliveryAddress != "1 Main St" {
				t.Errorf("order = %+v", o)
			}
			if fmt.Sprint(o.Items) != fmt.Sprint(wantItems) || o.TotalCents != 3900 {
				t.Errorf("items = %+v total %d, want %+v total 3900", o.Items, o.TotalCents, wantItems)
			}
			if !o.PlacedAt.Equal(placedAt) || o.PlacedAt.Location() != time.UTC || !o.AcceptBy.Equal(wantAcceptBy) {
				t.Errorf("placed_at %v accept_by %v, want %v and %v", o.PlacedAt, o.AcceptBy, placedAt, wantAcceptBy)
			}
			if in.AcceptTimeout != tt.wantTimeout || in.DeliverySLA != tt.wantSLA || in.PaymentToken != "tok_visa" {
				t.Errorf("input timeout %v sla %v token %q, want %v %v tok_visa", in.AcceptTimeout, in.DeliverySLA, in.PaymentToken, tt.wantTimeout, tt.wantSLA)
			}
		})
	}
}

// TestPlaceOrderTakesValidText is the other side of the UTF-8 and
// Content-Type checks of TestPlaceOrderRejectsBadInput: what is valid gets
// through as sent.
func TestPlaceOrderTakesValidText(t *testing.T) {
	tests := []struct {
		name, address, contentType, want string
	}{
		{name: "surrogate pair escape", address: `1 Pizza \ud83c\udf55 St`, want: "1 Pizza \U0001F355 St"},
		{name: "literal emoji", address: "1 Pizza \U0001F355 St", want: "1 Pizza \U0001F355 St"},
		{name: "literal replacement character", address: "1 Main \uFFFD St", want: "1 Main \uFFFD St"},
		{name: "escaped backslash before u", address: `1 Main \\ud800 St`, want: `1 Main \ud800 St`},
		{name: "charset in other case", address: "1 Main St", contentType: "Application/JSON; charset=UTF-8", want: "1 Main St"},
		{name: "charset utf8", address: "1 Main St", contentType: "application/json;charset=utf8", want: "1 Main St"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var in workflows.OrderInput
			f.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
				Run(func(args mock.Arguments) { in = args.Get(3).(workflows.OrderInput) }).
				Return(&mocks.WorkflowRun{}, nil).Once()
			body := strings.Replace(orderBody(t, nil), "1 Main St", tt.address, 1)
			req := newRequest(t, http.MethodPost, "/v1/orders", body, header("Idempotency-Key", "key-text"))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			decode(t, f.serve(req), http.StatusCreated, &placed{})
			if in.Order.DeliveryAddress != tt.want {
				t.Errorf("address = %q, want %q", in.Order.DeliveryAddress, tt.want)
			}
		})
	}
}

// TestPlaceOrderIsIdempotent replays requests against a workflow that the
// first one started: same key and request is the same order, a different
// request under the same key is refused, and a lost start race resolves to
// the winner's order.
func TestPlaceOrderIsIdempotent(t *testing.T) {
	f := newFixture(t)
	var (
		mu   sync.Mutex
		memo map[string]any
	)
	described := func(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		return describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, memo), nil
	}
	f.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) {
			mu.Lock()
			defer mu.Unlock()
			memo = args.Get(1).(client.StartWorkflowOptions).Memo
		}).
		Return(&mocks.WorkflowRun{}, nil).Once()
	// The mock workflow writes no order row, so every retry tries to start
	// again, is told the workflow exists, and compares with its memo.
	f.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
		Return(nil, serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1"))
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").Return(described)

	key := header("Idempotency-Key", "key-idem")
	var first placed
	decode(t, f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), key), http.StatusCreated, &first)

	tests := []struct {
		name   string
		body   string
		status int
	}{
		{name: "same request", body: orderBody(t, nil), status: http.StatusOK},
		{name: "same request, other member order and padding",
			body:   `{"payment_token":"tok_visa","delivery_address":" 1 Main St ","items":[{"quantity":2,"menu_item_id":"m_margherita"},{"quantity":1,"menu_item_id":"m_pepperoni"}],"restaurant_id":"r_pizza","customer_id":"c_ada"}`,
			status: http.StatusOK},
		{name: "different quantity", body: orderBody(t, func(m map[string]any) { item(m, 0)["quantity"] = 3 }), status: http.StatusUnprocessableEntity},
		{name: "different payment token", body: orderBody(t, func(m map[string]any) { m["payment_token"] = "tok_amex" }), status: http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bind(t)
			rec := f.do(t, http.MethodPost, "/v1/orders", tt.body, key)
			if tt.status != http.StatusOK {
				p := wantProblem(t, rec, tt.status, "Idempotency-Key")
				if p.Code != orderflow.EUNPROCESSABLE {
					t.Errorf("code = %q", p.Code)
				}
				return
			}
			var got placed
			decode(t, rec, http.StatusOK, &got)
			if got.ID != first.ID || got.Status != "placed" || got.TotalCents != first.TotalCents || !got.AcceptBy.Equal(first.AcceptBy) {
				t.Errorf("replay = %+v, want %+v", got, first)
			}
		})
	}

	t.Run("lost start race", func(t *testing.T) {
		g := newFixture(t)
		g.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
			Run(func(args mock.Arguments) {
				mu.Lock()
				defer mu.Unlock()
				memo = args.Get(1).(client.StartWorkflowOptions).Memo
			}).
			Return(nil, serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1")).Once()
		g.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").Return(described).Once()
		var got placed
		decode(t, g.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), header("Idempotency-Key", "key-race")), http.StatusOK, &got)
		if got.Status != "placed" || got.TotalCents != 3900 {
			t.Errorf("got %+v", got)
		}
	})
}

// TestPlaceOrderRetryAfterMenuChange proves that a retry whose first
// request placed the order is answered for that order even when the menu
// no longer allows it (the dish sold out meanwhile): a 400 would tell the
// client no order was placed while the first one goes on.
func TestPlaceOrderRetryAfterMenuChange(t *testing.T) {
	for _, recorded := range []bool{false, true} {
		name := "started, not recorded yet"
		if recorded {
			name = "recorded"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			var (
				memo  map[string]any
				first placed
			)
			f.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
				Run(func(args mock.Arguments) {
					memo = args.Get(1).(client.StartWorkflowOptions).Memo
					if !recorded {
						return
					}
					in := args.Get(3).(workflows.OrderInput)
					if _, err := f.store.InsertOrder(context.Background(), db.InsertOrderParams{
						ID: uuid.MustParse(in.Order.OrderID), CustomerID: customerID, RestaurantID: pizzaID,
						DeliveryAddress: "1 Main St", Status: "awaiting_acceptance", TotalCents: in.Order.TotalCents, AcceptBy: in.Order.AcceptBy, CreatedAt: testNow,
					}); err != nil {
						t.Errorf("insert order: %v", err)
					}
				}).
				Return(&mocks.WorkflowRun{}, nil).Once()
			f.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").
				Return(func(_ context.Context, workflowID, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
					if workflowID != orderflow.OrderWorkflowID(first.ID) {
						return nil, serviceerror.NewNotFound("workflow not found")
					}
					return describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, memo), nil
				})
			key := header("Idempotency-Key", "key-menu-change")
			decode(t, f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), key), http.StatusCreated, &first)

			if err := f.store.UpsertMenuItem(context.Background(), db.UpsertMenuItemParams{
				ID: margherita, RestaurantID: pizzaID, Name: "Margherita", PriceCents: 1250, Available: false,
			}); err != nil {
				t.Fatal(err)
			}
			var got placed
			decode(t, f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), key), http.StatusOK, &got)
			wantStatus := "placed"
			if recorded {
				wantStatus = "awaiting_acceptance"
			}
			if got.ID != first.ID || got.Status != wantStatus || got.TotalCents != first.TotalCents {
				t.Errorf("retry = %+v, want the first order %+v with status %s", got, first, wantStatus)
			}
			// Still compared with the first request: another body is a 422,
			// not the menu's 400.
			other := orderBody(t, func(m map[string]any) { item(m, 0)["quantity"] = 3 })
			wantProblem(t, f.do(t, http.MethodPost, "/v1/orders", other, key), http.StatusUnprocessableEntity, "Idempotency-Key")
			// A new key with the sold-out dish is refused as before.
			wantProblem(t, f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), header("Idempotency-Key", "key-menu-new")),
				http.StatusBadRequest, "items[0].menu_item_id")
		})
	}
}

// TestDatabaseUnavailableIsA503: a database that cannot be reached is a
// 503 the client may retry, with Retry-After, like an absent Temporal: not
// a 500.
func TestDatabaseUnavailableIsA503(t *testing.T) {
	pool, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	f := newFixture(t, func(c *api.Config) { c.Store = &db.Store{Queries: db.New(pool), DB: pool} })
	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/restaurants", ""},
		{http.MethodPost, "/v1/orders", orderBody(t, nil)},
	} {
		t.Run(req.method+" "+req.path, func(t *testing.T) {
			rec := f.do(t, req.method, req.path, req.body, header("Idempotency-Key", "key-db-down"))
			p := wantProblem(t, rec, http.StatusServiceUnavailable, "")
			if p.Code != orderflow.EUNAVAILABLE || rec.Header().Get("Retry-After") == "" {
				t.Errorf("code %q, Retry-After %q; want unavailable and a Retry-After", p.Code, rec.Header().Get("Retry-After"))
			}
		})
	}
}

// TestPlaceOrderTemporalUnavailable proves a workflow engine that does not
// answer is a 503 the client can retry, not a 500.
func TestPlaceOrderTemporalUnavailable(t *testing.T) {
	tests := []struct {
		name   string
		expect func(tc *mocks.Client)
	}{
		{name: "start", expect: func(tc *mocks.Client) {
			tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
				Return(nil, serviceerror.NewUnavailable("connection refused"))
		}},
		{name: "deadline", expect: func(tc *mocks.Client) {
			tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
				Return(nil, context.DeadlineExceeded)
		}},
		{name: "describe after already started", expect: func(tc *mocks.Client) {
			tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
				Return(nil, serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1"))
			tc.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").Return(nil, serviceerror.NewUnavailable("connection refused"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.expect(f.temporal)
			rec := f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), header("Idempotency-Key", "key-503"))
			p := wantProblem(t, rec, http.StatusServiceUnavailable, "")
			if p.Code != orderflow.EUNAVAILABLE {
				t.Errorf("code = %q, want unavailable", p.Code)
			}
		})
	}
}

// TestPlaceOrderExpiredWorkflow: a key whose order row exists but whose
// workflow is gone (retention) must not start a second workflow.
func TestPlaceOrderExpiredWorkflow(t *testing.T) {
	f := newFixture(t)
	key := "key-expired"
	// The first request placed an order under this key long ago.
	var first placed
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").
		Return(nil, serviceerror.NewNotFound("workflow not found"))
	f.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.OrderWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) {
			in := args.Get(3).(workflows.OrderInput)
			if _, err := f.store.InsertOrder(context.Background(), db.InsertOrderParams{
				ID: uuid.MustParse(in.Order.OrderID), CustomerID: customerID, RestaurantID: pizzaID,
				DeliveryAddress: "1 Main St", Status: "completed", TotalCents: 3900, AcceptBy: testNow, CreatedAt: testNow,
			}); err != nil {
				t.Errorf("insert order: %v", err)
			}
		}).
		Return(&mocks.WorkflowRun{}, nil).Once()
	decode(t, f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), header("Idempotency-Key", key)), http.StatusCreated, &first)

	rec := f.do(t, http.MethodPost, "/v1/orders", orderBody(t, nil), header("Idempotency-Key", key))
	wantProblem(t, rec, http.StatusConflict, "Idempotency-Key")
}

// order is GET /v1/orders/{id} as a client reads it.
type order struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	CustomerID string `json:"customer_id"`
	Items      []struct {
		MenuItemID     string `json:"menu_item_id"`
		LineTotalCents int64  `json:"line_total_cents"`
	} `json:"items"`
	TotalCents int64 `json:"total_cents"`
	Payment    struct {
		Status          string `json:"status"`
		AuthorizationID string `json:"authorization_id"`
	} `json:"payment"`
	AcceptBy time.Time `json:"accept_by"`
	Timeline []struct {
		Version   int64  `json:"version"`
		EventType string `json:"event_type"`
	} `json:"timeline"`
	Notifications []struct {
		Kind string `json:"kind"`
	} `json:"notifications"`
	Source string `json:"source"`
}

func TestGetOrder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	recorded := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance))
	if err := f.store.UpsertPayment(ctx, db.UpsertPaymentParams{OrderID: recorded, AuthorizationID: "auth_1", AmountCents: 3900, Status: "authorized", UpdatedAt: testNow}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.InsertNotification(ctx, db.InsertNotificationParams{IdempotencyKey: "n1", OrderID: recorded, Recipient: "restaurant", RecipientID: pizzaID, Kind: "new_order", Message: "new order"}); err != nil {
		t.Fatal(err)
	}
	closed := insertOrder(t, f.store, string(orderflow.StatusCompleted))
	stale := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance))
	unrecorded := uuid.New()
	recordedMeanwhile := uuid.New()
	unknown := uuid.New()

	wf := func(id uuid.UUID) string { return orderflow.OrderWorkflowID(id.String()) }
	tc := f.temporal
	tc.On("DescribeWorkflowExecution", mock.Anything, wf(recorded), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	tc.On("QueryWorkflow", mock.Anything, wf(recorded), "", workflows.QueryStatus).
		Return(statusValue{workflows.StatusView{OrderID: recorded.String(), Status: "accepted", PaymentStatus: "captured"}}, nil)
	tc.On("DescribeWorkflowExecution", mock.Anything, wf(closed), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, nil), nil)
	tc.On("DescribeWorkflowExecution", mock.Anything, wf(stale), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	tc.On("QueryWorkflow", mock.Anything, wf(stale), "", workflows.QueryStatus).
		Return(nil, serviceerror.NewDeadlineExceeded("no worker"))
	tc.On("DescribeWorkflowExecution", mock.Anything, wf(unrecorded), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, map[string]any{
			"request_hash": "h", "customer_id": customerID, "restaurant_id": sushiID,
			"total_cents": int64(800), "placed_at": testNow, "accept_by": testNow.Add(5 * time.Minute),
		}), nil)
	tc.On("QueryWorkflow", mock.Anything, wf(unrecorded), "", workflows.QueryStatus).
		Return(nil, serviceerror.NewDeadlineExceeded("no worker"))
	// Not recorded when the handler reads the row; the status query waits
	// for the workflow's task, which records the order and moves it on.
	tc.On("DescribeWorkflowExecution", mock.Anything, wf(recordedMeanwhile), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, map[string]any{
			"request_hash": "h", "customer_id": customerID, "restaurant_id": pizzaID,
			"total_cents": int64(3900), "placed_at": testNow, "accept_by": testNow.Add(pizzaWindow),
		}), nil)
	tc.On("QueryWorkflow", mock.Anything, wf(recordedMeanwhile), "", workflows.QueryStatus).
		Run(func(mock.Arguments) {
			insertOrderID(t, f.store, recordedMeanwhile, string(orderflow.StatusAwaitingAcceptance))
		}).
		Return(statusValue{workflows.StatusView{OrderID: recordedMeanwhile.String(), Status: "awaiting_acceptance", PaymentStatus: "authorized"}}, nil).Once()
	tc.On("DescribeWorkflowExecution", mock.Anything, wf(unknown), "").
		Return(nil, serviceerror.NewNotFound("workflow not found"))

	tests := []struct {
		name       string
		path       string
		status     int
		wantStatus string
		wantSource string
		wantItems  int
	}{
		{name: "running workflow answers", path: "/v1/orders/" + recorded.String(), status: 200, wantStatus: "accepted", wantSource: "workflow", wantItems: 2},
		{name: "closed workflow: database", path: "/v1/orders/" + closed.String(), status: 200, wantStatus: "completed", wantSource: "database", wantItems: 2},
		{name: "no worker: database", path: "/v1/orders/" + stale.String(), status: 200, wantStatus: "awaiting_acceptance", wantSource: "database", wantItems: 2},
		{name: "not recorded yet: memo", path: "/v1/orders/" + unrecorded.String(), status: 200, wantStatus: "placed", wantSource: "workflow", wantItems: 0},
		{name: "recorded during the status query: the row read again", path: "/v1/orders/" + recordedMeanwhile.String(), status: 200, wantStatus: "awaiting_acceptance", wantSource: "workflow", wantItems: 2},
		{name: "unknown order", path: "/v1/orders/" + unknown.String(), status: 404},
		{name: "not a UUID", path: "/v1/orders/nope", status: 404},
		{name: "UUID without hyphens", path: "/v1/orders/" + strings.ReplaceAll(unknown.String(), "-", ""), status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bind(t)
			rec := f.do(t, http.MethodGet, tt.path, "", nil)
			if tt.status != 200 {
				wantProblem(t, rec, tt.status, "")
				return
			}
			var got order
			decode(t, rec, 200, &got)
			if got.Status != tt.wantStatus || got.Source != tt.wantSource || len(got.Items) != tt.wantItems {
				t.Errorf("got status %q source %q %d items, want %q %q %d", got.Status, got.Source, len(got.Items), tt.wantStatus, tt.wantSource, tt.wantItems)
			}
			if got.Items == nil || got.Timeline == nil || got.Notifications == nil {
				t.Errorf("lists must be [], not null: %s", rec.Body)
			}
		})
	}

	t.Run("full view", func(t *testing.T) {
		var got order
		decode(t, f.do(t, http.MethodGet, "/v1/orders/"+recorded.String(), "", nil), 200, &got)
		if got.TotalCents != 3900 || got.Items[0].LineTotalCents != 2500 || got.CustomerID != customerID {
			t.Errorf("order = %+v", got)
		}
		if got.Payment.Status != "captured" || got.Payment.AuthorizationID != "auth_1" {
			t.Errorf("payment = %+v, want captured (from the workflow) with auth_1", got.Payment)
		}
		if len(got.Timeline) != 1 || got.Timeline[0].EventType != events.OrderPlaced || len(got.Notifications) != 1 {
			t.Errorf("timeline %+v notifications %+v", got.Timeline, got.Notifications)
		}
		if !got.AcceptBy.Equal(testNow.Add(pizzaWindow).Truncate(time.Microsecond)) { // PostgreSQL keeps microseconds
			t.Errorf("accept_by = %v", got.AcceptBy)
		}
	})
}

func TestListOrderEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance))
	// Inserted out of version order: the answer must still be in it.
	for _, ev := range []struct {
		version int64
		typ     string
	}{{2, events.OrderPaymentAuthorized}, {1, events.OrderPlaced}} {
		if _, err := f.store.InsertOutboxEvent(ctx, db.InsertOutboxEventParams{
			EventID: events.EventID(id.String(), ev.typ, ""), AggregateType: events.AggregateOrder, AggregateID: id.String(),
			AggregateVersion: ev.version, EventType: ev.typ, Payload: json.RawMessage(`{"order_id":"` + id.String() + `"}`), OccurredAt: testNow,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.DB.ExecContext(ctx, `UPDATE outbox_events SET published_at = $1 WHERE aggregate_version = 1`, testNow); err != nil {
		t.Fatal(err)
	}
	empty := insertOrder(t, f.store, string(orderflow.StatusPlaced))
	unknown := uuid.New()
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, orderflow.OrderWorkflowID(unknown.String()), "").
		Return(nil, serviceerror.NewNotFound("workflow not found"))

	type event struct {
		EventID     string          `json:"event_id"`
		Type        string          `json:"type"`
		CEType      string          `json:"ce_type"`
		Sequence    int64           `json:"sequence"`
		PublishedAt *time.Time      `json:"published_at"`
		Payload     json.RawMessage `json:"payload"`
	}
	tests := []struct {
		name   string
		id     string
		status int
		want   []string
	}{
		{name: "in sequence order", id: id.String(), status: 200, want: []string{events.OrderPlaced, events.OrderPaymentAuthorized}},
		{name: "order without events", id: empty.String(), status: 200, want: []string{}},
		{name: "unknown order", id: unknown.String(), status: 404},
		{name: "not a UUID", id: "x", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bind(t)
			rec := f.do(t, http.MethodGet, "/v1/orders/"+tt.id+"/events", "", nil)
			if tt.status != 200 {
				wantProblem(t, rec, tt.status, "")
				return
			}
			var got []event
			decode(t, rec, 200, &got)
			if got == nil {
				t.Fatalf("events = null, want a list")
			}
			var types []string
			for i, ev := range got {
				types = append(types, ev.Type)
				if ev.Sequence != int64(i+1) || ev.CEType != events.CEType(ev.Type) || ev.EventID != events.EventID(tt.id, ev.Type, "").String() {
					t.Errorf("event %d = %+v", i, ev)
				}
				if (ev.PublishedAt != nil) != (ev.Sequence == 1) {
					t.Errorf("event %d published_at = %v", i, ev.PublishedAt)
				}
				if !strings.Contains(string(ev.Payload), tt.id) {
					t.Errorf("payload = %s", ev.Payload)
				}
			}
			if fmt.Sprint(types) != fmt.Sprint(tt.want) && len(tt.want) > 0 {
				t.Errorf("types = %v, want %v", types, tt.want)
			}
		})
	}
}

// newRequest builds a request as do would, for cases that tweak it.
func newRequest(tb testing.TB, method, path, body string, h http.Header) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestWrongMethodIsAProblem: a route called with a method it does not take
// answers 405 as a problem with a code, like every other error.
func TestWrongMethodIsAProblem(t *testing.T) {
	f := newFixture(t)
	f.bind(t)
	rec := f.do(t, http.MethodDelete, "/v1/orders", "", nil)
	p := wantProblem(t, rec, http.StatusMethodNotAllowed, "")
	if p.Code != "method_not_allowed" || p.Type != "https://orderflow.dev/problems/method_not_allowed" {
		t.Errorf("problem code %q type %q; want method_not_allowed", p.Code, p.Type)
	}
}

// TestHeadIsGetWithoutItsBody: HEAD is answered wherever GET is, with
// GET's status and Content-Length and no body, over a real net/http
// server; a route without GET answers HEAD 405, and the Allow of a 405 and
// of an OPTIONS names HEAD where it names GET.
func TestHeadIsGetWithoutItsBody(t *testing.T) {
	f := newFixture(t)
	f.bind(t)
	srv := httptest.NewServer(f.srv.Handler())
	t.Cleanup(srv.Close)
	send := func(method, path string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	for _, path := range []string{"/healthz", "/v1/restaurants", "/v1/restaurants/r_nope"} {
		get, getBody := send(http.MethodGet, path)
		head, headBody := send(http.MethodHead, path)
		if head.StatusCode != get.StatusCode || len(headBody) != 0 || head.ContentLength != int64(len(getBody)) {
			t.Errorf("HEAD %s = %d, Content-Length %d, %d body bytes; want GET's %d, Content-Length %d, no body",
				path, head.StatusCode, head.ContentLength, len(headBody), get.StatusCode, len(getBody))
		}
	}
	if resp, _ := send(http.MethodHead, "/v1/orders"); resp.StatusCode != http.StatusMethodNotAllowed || strings.Contains(resp.Header.Get("Allow"), http.MethodHead) {
		t.Errorf("HEAD /v1/orders = %d, Allow %q; want 405 without HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if resp, _ := send(http.MethodDelete, "/v1/restaurants"); !strings.Contains(resp.Header.Get("Allow"), http.MethodHead) {
		t.Errorf("DELETE /v1/restaurants: Allow %q; want it to name HEAD", resp.Header.Get("Allow"))
	}
	if resp, _ := send(http.MethodOptions, "/v1/restaurants"); resp.StatusCode >= 300 || !strings.Contains(resp.Header.Get("Allow"), http.MethodHead) {
		t.Errorf("OPTIONS /v1/restaurants = %d, Allow %q; want it to name HEAD, as a 405 does", resp.StatusCode, resp.Header.Get("Allow"))
	}
}
