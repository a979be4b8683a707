package tests_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/tests/apptest"
)

// proxy is a TCP proxy in front of target that a test can cut (every
// connection closed, new ones closed as they come) and restore: an outage
// of what is behind it, as its clients see one. It keeps its port
// throughout, so that no other socket can take it meanwhile.
type proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // the test ended
			}
			go p.pipe(c)
		}
	}()
	return p
}

// pipe relays c to a new connection to the target, until either side
// closes or the proxy is cut.
func (p *proxy) pipe(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(up, c)
		up.Close()
	}()
	_, _ = io.Copy(c, up)
	c.Close()
}

// cut closes every connection through the proxy and the new ones from now.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore relays new connections again.
func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestTemporalOutageAnswers503AndStartsNothing: while the API cannot reach
// Temporal, placing an order and deciding on one are answered 503
// problem+json with Retry-After, not a 500 and not a wait without end; an
// order is still read (from the database). Nothing is half-started: once
// Temporal is back, the placement retried with its Idempotency-Key is the
// one that creates the order (201, not the 200 of a retry), the decision
// sent again takes, and both orders run to completion.
func TestTemporalOutageAnswers503AndStartsNothing(t *testing.T) {
	app := apptest.Start(t) // the worker and the relay
	link := startProxy(t, app.Env.Stack.TemporalAddr)
	api := apptest.StartAPI(t, apptest.TaskQueue, "TEMPORAL_ADDRESS="+link.addr)
	first := place(t, api, orderRequest(pizzeria, margherita, 1, "tok_visa"))
	waitStatus(t, api, first.ID, "awaiting_acceptance")

	link.cut()
	key := newKey(t.Name())
	body := orderRequest(pizzeria, diavola, 1, "tok_visa")
	type answer struct {
		what string
		resp apptest.Response
		err  error
	}
	answers := make(chan answer, 2)
	// Both at once: each waits for Temporal as long as the API does.
	go func() {
		resp, err := api.Request(http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
		answers <- answer{"place", resp, err}
	}()
	go func() {
		resp, err := api.Request(http.MethodPost, "/v1/orders/"+first.ID+"/accept", nil)
		answers <- answer{"accept", resp, err}
	}()
	for range 2 {
		a := <-answers
		if a.err != nil {
			t.Fatalf("%s during the outage: %v", a.what, a.err)
		}
		var p problem
		a.resp.JSON(t, &p)
		if a.resp.Status != http.StatusServiceUnavailable || a.resp.Header.Get("Content-Type") != "application/problem+json" ||
			a.resp.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "retry") {
			t.Errorf("%s during the outage = %d %s %q (Retry-After %q); want 503 problem+json saying to retry, with Retry-After",
				a.what, a.resp.Status, a.resp.Header.Get("Content-Type"), a.resp.Body, a.resp.Header.Get("Retry-After"))
		}
	}
	if o := getOrder(t, api, first.ID); o.Status != "awaiting_acceptance" {
		t.Errorf("order read during the outage is %q; want awaiting_acceptance", o.Status)
	}

	link.restore()
	// The API's client reconnects on its own schedule: retry as a client
	// told "retry later" would.
	var resp apptest.Response
	deadline := time.Now().Add(statusTimeout)
	for {
		var err error
		resp, err = api.Request(http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("place after the outage: %v", err)
		}
		if err == nil && resp.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if resp.Status != http.StatusCreated {
		t.Fatalf("placement retried after the outage = %d %s; want 201: the attempt during the outage must have started nothing", resp.Status, resp.Body)
	}
	var second placed
	resp.JSON(t, &second)
	mustDecide(t, api, first.ID, "accept", nil, "accepted")
	mustDecide(t, api, first.ID, "delivered", nil, "completed")
	waitStatus(t, api, second.ID, "awaiting_acceptance")
	mustDecide(t, api, second.ID, "accept", nil, "accepted")
	mustDecide(t, api, second.ID, "delivered", nil, "completed")
	for _, o := range []placed{first, second} {
		if got := netCharged(t, api, o.ID); got != o.TotalCents {
			t.Errorf("order %s: charged %d; want its total %d, once", o.ID, got, o.TotalCents)
		}
	}
}
