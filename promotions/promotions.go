// Package promotions is the promotions bounded context: it thanks a
// customer for every completed order with a voucher off the next one. It
// learns about orders only from the order.completed events it consumes
// (with the consumer kit) and keeps its vouchers in tables of its own
// (schema promotions); the HTTP API mounts its read side.
package promotions

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
)

// ConsumerName is the promotions context's durable consumer and inbox key.
const ConsumerName = "promotions"

// The voucher every completed order earns.
const (
	VoucherAmountCents = 500
	VoucherValidity    = 30 * 24 * time.Hour
)

// Bounds on a customer's voucher list.
const (
	DefaultVoucherLimit = 100
	MaxVoucherLimit     = 500
)

// Voucher is an amount off a customer's next order.
type Voucher struct {
	Code        string    `json:"code"`
	CustomerID  string    `json:"customer_id"`
	OrderID     string    `json:"order_id"`
	AmountCents int64     `json:"amount_cents"`
	IssuedAt    time.Time `json:"issued_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Service is the promotions context.
type Service struct {
	store  *db.Store
	logger *slog.Logger
}

// New returns the context over its database.
func New(store *db.Store, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, logger: logger.With("context", "promotions")}
}

// ConsumerConfig is the context's consumer: order.completed events only,
// unordered (one event per order matters, so there is nothing to order),
// schema-checked. Callers may tune it before consumer.New.
func (s *Service) ConsumerConfig(js jetstream.JetStream) consumer.Config {
	return consumer.Config{
		Name:      ConsumerName,
		Stream:    events.OrderStream,
		Subjects:  []string{events.Subject(events.OrderCompleted, "*")},
		Handler:   s.Handle,
		Validate:  consumer.ValidateSchema,
		DB:        s.store.DB,
		JetStream: js,
		Logger:    s.logger,
	}
}

// Handle issues the voucher of a completed order, in the consumer's
// transaction. An order has one voucher whatever happens: the inbox drops a
// redelivered event, and order_id is unique besides.
func (s *Service) Handle(ctx context.Context, tx *sql.Tx, env events.Envelope) error {
	if env.EventType() != events.OrderCompleted {
		return nil
	}
	var ev events.OrderEvent
	if err := json.Unmarshal(env.Data, &ev); err != nil {
		return consumer.Permanentf("decode %s: %w", env.Type, err)
	}
	orderID, err := uuid.Parse(ev.OrderID)
	if err != nil || ev.CustomerID == "" {
		return consumer.Permanentf("%s without an order id and a customer id", env.Type)
	}
	issued := ev.OccurredAt
	if issued.IsZero() {
		issued = env.Time
	}
	issued = issued.UTC().Truncate(time.Microsecond)
	code := VoucherCode(orderID)
	n, err := db.New(tx).InsertVoucher(ctx, db.InsertVoucherParams{
		Code: code, CustomerID: ev.CustomerID, OrderID: orderID, AmountCents: VoucherAmountCents,
		IssuedAt: issued, ExpiresAt: issued.Add(VoucherValidity), EventID: env.ID,
	})
	if err != nil {
		return fmt.Errorf("insert voucher: %w", err)
	}
	if n == 1 {
		// Logged in the transaction, before its commit: a failed commit
		// issues nothing, and the retry logs again.
		s.logger.InfoContext(ctx, "issuing voucher", "code", code, "customer_id", ev.CustomerID, "order_id", orderID)
	}
	return nil
}

// VoucherCode is the code of an order's voucher: derived from the order, so
// an order can only ever have the one.
func VoucherCode(orderID uuid.UUID) string {
	sum := sha256.Sum256(orderID[:])
	return "THANKS-" + base32.StdEncoding.EncodeToString(sum[:])[:12]
}

// CustomerVouchers lists a customer's vouchers, newest first, at most
// limit (0 means DefaultVoucherLimit). A customer the context has issued
// nothing to has none: promotions knows customers only from events.
func (s *Service) CustomerVouchers(ctx context.Context, customerID string, limit int) ([]Voucher, error) {
	switch {
	case limit == 0:
		limit = DefaultVoucherLimit
	case limit < 0 || limit > MaxVoucherLimit:
		return nil, orderflow.FieldErrorf("limit", "must be an integer from 1 to %d", MaxVoucherLimit)
	}
	rows, err := s.store.ListCustomerVouchers(ctx, db.ListCustomerVouchersParams{CustomerID: customerID, MaxRows: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("list vouchers: %w", err)
	}
	out := make([]Voucher, 0, len(rows))
	for _, r := range rows {
		out = append(out, Voucher{
			Code: r.Code, CustomerID: r.CustomerID, OrderID: r.OrderID.String(), AmountCents: r.AmountCents,
			IssuedAt: r.IssuedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		})
	}
	return out, nil
}
