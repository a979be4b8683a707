package api_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/orderflow/orderflow/api"
)

// openAPIDoc is the part of the OpenAPI document the tests check.
type openAPIDoc struct {
	OpenAPI string                    `yaml:"openapi"`
	Paths   map[string]map[string]any `yaml:"paths"`
}

// TestOpenAPICoversRoutes keeps the document and the router in step: every
// registered route is documented with its method, and every documented
// operation is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, http.MethodGet, "/openapi.yaml", "", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /openapi.yaml: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}

	routes := f.srv.Routes()
	if len(routes) < 14 {
		t.Fatalf("only %d routes registered: %+v", len(routes), routes)
	}
	for _, r := range routes {
		if _, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is not in openapi.yaml", r.Method, r.Path)
		}
	}
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			want := api.Route{Method: strings.ToUpper(method), Path: path}
			if !slices.Contains(routes, want) {
				t.Errorf("openapi.yaml documents %s %s, which is not served", want.Method, want.Path)
			}
		}
	}
}

// TestHealthOnlyServer: without a store the server serves health and the
// document only, and every other path is a problem+json 404.
func TestHealthOnlyServer(t *testing.T) {
	srv := api.New(api.Config{})
	tests := []struct {
		name   string
		method string
		path   string
		status int
	}{
		{name: "healthz", method: http.MethodGet, path: "/healthz", status: 200},
		{name: "readyz with no checks", method: http.MethodGet, path: "/readyz", status: 200},
		{name: "openapi", method: http.MethodGet, path: "/openapi.yaml", status: 200},
		{name: "no order routes", method: http.MethodPost, path: "/v1/orders", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if tt.status >= 400 {
				wantProblem(t, rec, tt.status, "")
			}
		})
	}
}
