package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/mocks"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/promotions"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// testNow is the clock of every fixture, so deadlines are exact.
var testNow = time.Date(2026, 3, 14, 12, 30, 45, 123456789, time.UTC)

// Seed data: two restaurants and a customer.
const (
	pizzaID     = "r_pizza"
	sushiID     = "r_sushi"
	margherita  = "m_margherita" // 1250, Pizza Place
	pepperoni   = "m_pepperoni"  // 1400, Pizza Place
	soldOut     = "m_soldout"    // unavailable, Pizza Place
	goldLeaf    = "m_goldleaf"   // Sushi Bar, priced so that 2 overflow a total
	nigiri      = "s_nigiri"     // 800, Sushi Bar
	customerID  = "c_ada"
	pizzaWindow = 600 * time.Second
)

// fixture is a server over a fresh, seeded database and a mock Temporal
// client. The mock has no expectations unless a test adds them, so any
// unexpected call to Temporal fails the test.
//
// These are unit tests of the HTTP layer: how it maps each answer Temporal
// can give (started, already started, not found, unavailable, an Update's
// outcome) to a response, including answers a real server gives only in
// races or outages. What the answers mean for a real order is tested
// against the embedded Temporal server, a real worker and PostgreSQL in
// tests/ (the order paths, idempotent and concurrent retries, a retry
// after the menu changed, late and repeated decisions).
type fixture struct {
	srv      *api.Server
	store    *db.Store
	temporal *mocks.Client
}

// newFixture builds the fixture; edit adjusts the configuration.
func newFixture(tb testing.TB, edit ...func(*api.Config)) *fixture {
	tb.Helper()
	store := dbtest.New(tb)
	seed(tb, store)
	tc := mocks.NewClient(tb)
	cfg := api.Config{
		Store:     store,
		Temporal:  tc,
		TaskQueue: "orders-test",
		Now:       func() time.Time { return testNow },
		// The bounded contexts' read sides, over the same database.
		Promotions: promotions.New(store, nil),
		Analytics:  analytics.New(store, nil),
	}
	for _, e := range edit {
		e(&cfg)
	}
	return &fixture{srv: api.New(cfg), store: store, temporal: tc}
}

// seed writes the restaurants, menus and customer the tests order from.
func seed(tb testing.TB, store *db.Store) {
	tb.Helper()
	ctx := context.Background()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatalf("seed: %v", err)
		}
	}
	must(store.UpsertRestaurant(ctx, db.UpsertRestaurantParams{ID: pizzaID, Name: "Pizza Place", AcceptTimeoutSeconds: int32(pizzaWindow / time.Second)}))
	must(store.UpsertRestaurant(ctx, db.UpsertRestaurantParams{ID: sushiID, Name: "Sushi Bar", AcceptTimeoutSeconds: 300}))
	for _, m := range []db.UpsertMenuItemParams{
		{ID: margherita, RestaurantID: pizzaID, Name: "Margherita", PriceCents: 1250, Available: true},
		{ID: pepperoni, RestaurantID: pizzaID, Name: "Pepperoni", PriceCents: 1400, Available: true},
		{ID: soldOut, RestaurantID: pizzaID, Name: "Calzone", PriceCents: 900, Available: false},
		{ID: nigiri, RestaurantID: sushiID, Name: "Nigiri", PriceCents: 800, Available: true},
		{ID: goldLeaf, RestaurantID: sushiID, Name: "Gold leaf", PriceCents: 1 << 62, Available: true},
	} {
		must(store.UpsertMenuItem(ctx, m))
	}
	must(store.UpsertCustomer(ctx, db.UpsertCustomerParams{ID: customerID, Name: "Ada", Email: "ada@example.com"}))
}

// insertOrder writes an order row as the record activity would, with two
// lines and one timeline entry, and returns its ID.
func insertOrder(tb testing.TB, store *db.Store, status string) uuid.UUID {
	tb.Helper()
	id := uuid.New()
	insertOrderID(tb, store, id, status)
	return id
}

// insertOrderID is insertOrder with the order's ID given.
func insertOrderID(tb testing.TB, store *db.Store, id uuid.UUID, status string) {
	tb.Helper()
	ctx := context.Background()
	if _, err := store.InsertOrder(ctx, db.InsertOrderParams{
		ID: id, CustomerID: customerID, RestaurantID: pizzaID, DeliveryAddress: "1 Main St",
		Status: status, TotalCents: 3900, AcceptBy: testNow.Add(pizzaWindow), CreatedAt: testNow,
	}); err != nil {
		tb.Fatalf("insert order: %v", err)
	}
	for i, it := range []db.InsertOrderItemParams{
		{MenuItemID: margherita, Name: "Margherita", UnitPriceCents: 1250, Quantity: 2},
		{MenuItemID: pepperoni, Name: "Pepperoni", UnitPriceCents: 1400, Quantity: 1},
	} {
		it.OrderID, it.Line = id, int32(i+1)
		if err := store.InsertOrderItem(ctx, it); err != nil {
			tb.Fatalf("insert order item: %v", err)
		}
	}
	if err := store.InsertTimeline(ctx, db.InsertTimelineParams{
		OrderID: id, Version: 1, EventID: events.EventID(id.String(), events.OrderPlaced, ""),
		EventType: events.OrderPlaced, Status: string(orderflow.StatusPlaced), OccurredAt: testNow,
	}); err != nil {
		tb.Fatalf("insert timeline: %v", err)
	}
}

// bind reports unexpected Temporal calls to t, a subtest, so that one
// failing case does not abort its siblings by failing their parent.
func (f *fixture) bind(t *testing.T) { f.temporal.Test(t) }

// do sends one request through the server's handler.
func (f *fixture) do(tb testing.TB, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return f.serve(req)
}

// serve sends a prepared request through the server's handler.
func (f *fixture) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// problem is the problem+json body, as a client reads it.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
	Code   string `json:"code"`
}

// wantProblem asserts a problem+json response with the status and field.
func wantProblem(tb testing.TB, rec *httptest.ResponseRecorder, status int, field string) problem {
	tb.Helper()
	if rec.Code != status {
		tb.Fatalf("status = %d, want %d; body: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		tb.Fatalf("decode problem %q: %v", rec.Body, err)
	}
	if p.Status != status {
		tb.Errorf("problem status = %d, want %d", p.Status, status)
	}
	if p.Field != field {
		tb.Errorf("problem field = %q, want %q (detail %q)", p.Field, field, p.Detail)
	}
	return p
}

// decode asserts the status and decodes a JSON body into v.
func decode(tb testing.TB, rec *httptest.ResponseRecorder, status int, v any) {
	tb.Helper()
	if rec.Code != status {
		tb.Fatalf("status = %d, want %d; body: %s", rec.Code, status, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		tb.Fatalf("decode %q: %v", rec.Body, err)
	}
}

// describeResponse is what Describe answers for a workflow with the memo
// the API started it with.
func describeResponse(tb testing.TB, status enumspb.WorkflowExecutionStatus, memo map[string]any) *workflowservice.DescribeWorkflowExecutionResponse {
	tb.Helper()
	fields := make(map[string]*commonpb.Payload, len(memo))
	for k, v := range memo {
		p, err := converter.GetDefaultDataConverter().ToPayload(v)
		if err != nil {
			tb.Fatalf("encode memo %s: %v", k, err)
		}
		fields[k] = p
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
			Status:    status,
			StartTime: timestamppb.New(testNow),
			Memo:      &commonpb.Memo{Fields: fields},
		},
	}
}

// statusValue is a query result holding a StatusView-shaped value.
type statusValue struct{ v any }

func (s statusValue) HasValue() bool { return true }

func (s statusValue) Get(ptr any) error {
	b, err := json.Marshal(s.v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, ptr)
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}
