package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow"
)

// TestMalformedQueryIsRefused: a query pair that url.ParseQuery cannot
// parse (a bad percent-escape, a semicolon) is dropped by echo's
// c.QueryParams(), so the filter or the limit the client asked for would
// be ignored, and the "given twice" check bypassed. Each is a 400 naming
// the parameter, like any other bad value of it.
func TestMalformedQueryIsRefused(t *testing.T) {
	f := newFixture(t)
	placed := insertOrder(t, f.store, string(orderflow.StatusPlaced))
	insertOrder(t, f.store, string(orderflow.StatusAccepted))

	for _, tc := range []struct{ path, field string }{
		{"/v1/restaurants/" + pizzaID + "/orders?status=%zz", "status"},
		{"/v1/restaurants/" + pizzaID + "/orders?status=accepted;x=1", "status"},
		{"/v1/restaurants/" + pizzaID + "/orders?limit=%zz", "limit"},
		{"/v1/restaurants/" + pizzaID + "/stats?from=2026-03-01&from=%zz", "from"},
		{"/v1/restaurants/" + pizzaID + "/stats?to=2026-03-01;", "to"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f.bind(t)
			rec := f.do(t, http.MethodGet, tc.path, "", nil)
			if rec.Code == http.StatusOK {
				var got []struct{ ID, Status string }
				_ = json.Unmarshal(rec.Body.Bytes(), &got)
				for _, o := range got {
					if o.ID == placed.String() {
						t.Logf("the answer lists the placed order %s: no status filter was applied", o.ID)
					}
				}
			}
			wantProblem(t, rec, http.StatusBadRequest, tc.field)
		})
	}
}

// TestPathParamsArePercentDecoded: a path parameter is decoded whatever
// the request's escaping. When it is not Go's canonical one, echo routes
// on URL.RawPath and hands the raw segment to c.Param: r%5Fpizza, which
// RFC 3986 makes the same as r_pizza, was a 404 naming "r%5Fpizza", and
// %ff was kept as three characters while %FF was decoded.
func TestPathParamsArePercentDecoded(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{
		"/v1/restaurants/r%5Fpizza",
		"/v1/restaurants/r%5fpizza",
		"/v1/restaurants/%72_pizza",
		"/v1/restaurants/r%5Fpizza/orders",
	} {
		t.Run(path, func(t *testing.T) {
			f.bind(t)
			rec := f.do(t, http.MethodGet, path, "", nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d %s; want 200, the same resource as r_pizza", path, rec.Code, rec.Body)
			}
		})
	}
	t.Run("stats %ff and %FF agree", func(t *testing.T) {
		f.bind(t)
		lower := f.do(t, http.MethodGet, "/v1/restaurants/%ff/stats", "", nil)
		upper := f.do(t, http.MethodGet, "/v1/restaurants/%FF/stats", "", nil)
		if lower.Code != upper.Code {
			t.Fatalf("GET /v1/restaurants/%%ff/stats = %d %s\nGET /v1/restaurants/%%FF/stats = %d %s\nwant the same answer: they name the same ID",
				lower.Code, lower.Body, upper.Code, upper.Body)
		}
	})
}

// TestContentEncodingIsRefused: a body in a content coding the API does
// not decode is a 415 naming Content-Encoding (RFC 9110 15.5.16), as a
// wrong Content-Type names that header: a gzip body was refused as
// malformed JSON, and a body labelled br but sent plain was taken.
func TestContentEncodingIsRefused(t *testing.T) {
	f := newFixture(t)
	f.bind(t)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(`{"reason":"out of dough"}`))
	_ = w.Close()
	req := httptest.NewRequest(http.MethodPost, "/v1/orders/"+uuid.NewString()+"/reject", bytes.NewReader(gz.Bytes()))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	rec := f.serve(req)
	wantProblem(t, rec, http.StatusUnsupportedMediaType, "Content-Encoding")

	for _, coding := range []string{"br", "identity, gzip"} {
		req = httptest.NewRequest(http.MethodPost, "/v1/orders/"+uuid.NewString()+"/reject", strings.NewReader(`{"reason":"out of dough"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", coding)
		wantProblem(t, f.serve(req), http.StatusUnsupportedMediaType, "Content-Encoding")
	}
}
