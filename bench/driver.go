package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/workflows"
)

// notNotified is the problem code of the API's answer to an accept of an
// order whose restaurant has not been notified yet (the Update's validator
// refuses it with workflows.ErrTypeNotYetNotified). A restaurant cannot
// accept an order it has not seen; a driver that accepts right after
// placing may be early, and then tries again shortly, as a restaurant's
// tablet would.
const notNotified = "not_yet"

// acceptRetryDelay is how long a driver waits before accepting again.
const acceptRetryDelay = 5 * time.Millisecond

// timing is one order's measurements.
type timing struct {
	place, accept, deliver, total time.Duration
	done                          time.Time
	acceptRetries                 int
	workflowID                    string
}

// system is one thing the bench drives: orderflow through its HTTP API, or
// a baseline through the SDK.
type system interface {
	Name() string
	// order runs one order from placement to completion.
	order(ctx context.Context, key string) (timing, error)
}

// System names, as they appear in the results.
const (
	SystemOrderflow = "orderflow"
	SystemSameShape = "same-shape"
	SystemNaive     = "naive"
)

// httpSystem drives orderflow through its public HTTP API, as a client
// would: POST /v1/orders, then accept, then delivered.
type httpSystem struct {
	base   string
	client *http.Client
	body   []byte
}

func newHTTPSystem(baseURL string, concurrency int) *httpSystem {
	body, _ := json.Marshal(map[string]any{
		"customer_id": "c_ada", "restaurant_id": "r_pizza",
		"items":            []map[string]any{{"menu_item_id": "m_margherita", "quantity": 2}},
		"delivery_address": "1 Bench Street", "payment_token": "tok_visa",
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = concurrency*2, concurrency*2
	return &httpSystem{base: strings.TrimRight(baseURL, "/"), client: &http.Client{Transport: tr, Timeout: time.Minute}, body: body}
}

func (s *httpSystem) Name() string { return SystemOrderflow }

func (s *httpSystem) post(ctx context.Context, path string, body []byte, key string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func (s *httpSystem) order(ctx context.Context, key string) (timing, error) {
	var t timing
	began := time.Now()
	code, body, err := s.post(ctx, "/v1/orders", s.body, key)
	t.place = time.Since(began)
	if err != nil || code != http.StatusCreated {
		return t, errf("place", httpErr(code, body, err))
	}
	var placed struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &placed); err != nil {
		return t, errf("place", err)
	}
	t.workflowID = orderflow.OrderWorkflowID(placed.ID)
	for {
		began := time.Now()
		code, body, err = s.post(ctx, "/v1/orders/"+placed.ID+"/accept", nil, "")
		t.accept = time.Since(began)
		if err == nil && code == http.StatusConflict && problemCode(body) == notNotified {
			t.acceptRetries++
			if err := sleep(ctx, acceptRetryDelay); err != nil {
				return t, err
			}
			continue
		}
		break
	}
	if err != nil || code != http.StatusOK {
		return t, errf("accept", httpErr(code, body, err))
	}
	began2 := time.Now()
	code, body, err = s.post(ctx, "/v1/orders/"+placed.ID+"/delivered", nil, "")
	t.deliver = time.Since(began2)
	if err != nil || code != http.StatusOK || !bytes.Contains(body, []byte(`"completed"`)) {
		return t, errf("delivered", httpErr(code, body, err))
	}
	t.done = time.Now()
	t.total = t.done.Sub(began)
	return t, nil
}

func httpErr(code int, body []byte, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("HTTP %d: %s", code, bytes.TrimSpace(body))
}

// sameShapeSystem drives workflows.Order, with NoopActivities, through the
// SDK: start (eagerly, as the API does), the accept Update, the delivered
// Update.
type sameShapeSystem struct {
	c         client.Client
	taskQueue string
}

func (s *sameShapeSystem) Name() string { return SystemSameShape }

func (s *sameShapeSystem) order(ctx context.Context, key string) (timing, error) {
	var t timing
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String()
	t.workflowID = "bench-same-shape:" + id
	began := time.Now()
	in := baselineInput(id, began)
	memo, summary := baselineStart(in)
	_, err := s.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: t.workflowID, TaskQueue: s.taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		EnableEagerStart:         true,
		Memo:                     memo,
		StaticSummary:            summary,
	}, workflows.OrderWorkflowName, in)
	t.place = time.Since(began)
	if err != nil {
		return t, errf("start", err)
	}
	update := func(name string) (string, error) {
		h, err := s.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: t.workflowID, UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		var res workflows.DecisionResult
		if err == nil {
			err = h.Get(ctx, &res)
		}
		return res.Status, err
	}
	var status string
	for {
		b := time.Now()
		status, err = update(workflows.UpdateAccept)
		t.accept = time.Since(b)
		if appErr, ok := errors.AsType[*temporal.ApplicationError](err); ok && appErr.Type() == workflows.ErrTypeNotYetNotified {
			t.acceptRetries++
			if err := sleep(ctx, acceptRetryDelay); err != nil {
				return t, err
			}
			continue
		}
		break
	}
	if err != nil || status != string(orderflow.StatusAccepted) {
		return t, errf("accept", statusErr(status, err))
	}
	b := time.Now()
	status, err = update(workflows.UpdateDelivered)
	t.deliver = time.Since(b)
	if err != nil || status != string(orderflow.StatusCompleted) {
		return t, errf("delivered", statusErr(status, err))
	}
	t.done = time.Now()
	t.total = t.done.Sub(began)
	return t, nil
}

func statusErr(status string, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("status %q", status)
}

// naiveSystem drives NaiveOrder through the SDK: start, signal accept,
// signal delivered, wait for the result (signals answer nothing).
type naiveSystem struct {
	c         client.Client
	taskQueue string
}

func (s *naiveSystem) Name() string { return SystemNaive }

func (s *naiveSystem) order(ctx context.Context, key string) (timing, error) {
	var t timing
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String()
	t.workflowID = "bench-naive:" + id
	began := time.Now()
	in := baselineInput(id, began)
	memo, summary := baselineStart(in)
	run, err := s.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: t.workflowID, TaskQueue: s.taskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		Memo:                  memo,
		StaticSummary:         summary,
	}, NaiveWorkflowName, in)
	t.place = time.Since(began)
	if err != nil {
		return t, errf("start", err)
	}
	b := time.Now()
	if err := s.c.SignalWorkflow(ctx, t.workflowID, run.GetRunID(), SignalAccept, nil); err != nil {
		return t, errf("accept", err)
	}
	t.accept = time.Since(b)
	b = time.Now()
	if err := s.c.SignalWorkflow(ctx, t.workflowID, run.GetRunID(), SignalDelivered, nil); err != nil {
		return t, errf("delivered", err)
	}
	var res workflows.OrderResult
	if err := run.Get(ctx, &res); err != nil {
		return t, errf("result", err)
	}
	t.deliver = time.Since(b)
	if res.Status != string(orderflow.StatusCompleted) {
		return t, errf("result", fmt.Errorf("status %q", res.Status))
	}
	t.done = time.Now()
	t.total = t.done.Sub(began)
	return t, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// drive runs n orders through sys, c at a time, calling progress after each.
// It stops at the first error: a benchmark that loses orders measures
// nothing.
func drive(ctx context.Context, sys system, keyPrefix string, n, c int, progress func(done int)) ([]timing, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		mu      sync.Mutex
		timings = make([]timing, 0, n)
		first   error
		wg      sync.WaitGroup
	)
	began := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t, err := sys.order(ctx, fmt.Sprintf("%s-%d", keyPrefix, i))
				mu.Lock()
				if err != nil {
					if first == nil && !errors.Is(err, context.Canceled) {
						first = fmt.Errorf("%s order %d: %w", sys.Name(), i, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				timings = append(timings, t)
				done := len(timings)
				mu.Unlock()
				if progress != nil {
					progress(done)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	if first == nil && ctx.Err() != nil && len(timings) < n {
		first = ctx.Err()
	}
	return timings, elapsed, first
}

// problemCode is the code of a problem+json body, "" when it has none.
func problemCode(body []byte) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Code
}
