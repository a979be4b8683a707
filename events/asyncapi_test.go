package events_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/orderflow/orderflow/events"
)

// asyncAPIPath is docs/asyncapi.yaml, seen from this package's directory.
const asyncAPIPath = "../docs/asyncapi.yaml"

// TestAsyncAPIDescribesEveryEvent keeps docs/asyncapi.yaml in step with the
// code: an AsyncAPI 3 document with a channel, a message and an operation
// for every event type, on the subject the relay publishes it to, whose
// payload is the event's schema file; every reference resolves, and the
// CloudEvents headers the envelope sets are all described.
func TestAsyncAPIDescribesEveryEvent(t *testing.T) {
	b, err := os.ReadFile(asyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v", asyncAPIPath, err)
	}
	if doc["asyncapi"] != "3.0.0" {
		t.Errorf("asyncapi = %v, want 3.0.0", doc["asyncapi"])
	}

	type want struct {
		eventType, action string
	}
	var wants []want
	for _, typ := range events.OrderEventTypes {
		wants = append(wants, want{typ, "send"})
	}
	wants = append(wants, want{events.DeliveryCompleted, "receive"})
	for _, w := range wants {
		t.Run(w.eventType, func(t *testing.T) {
			ch, ok := lookup(doc, "channels", w.eventType).(map[string]any)
			if !ok {
				t.Fatalf("no channel %s", w.eventType)
			}
			if got, want := ch["address"], events.Subject(w.eventType, "{orderId}"); got != want {
				t.Errorf("address = %v, want %s", got, want)
			}
			ref, _ := lookup(ch, "messages", w.eventType, "$ref").(string)
			msg, ok := resolve(doc, ref).(map[string]any)
			if !ok {
				t.Fatalf("channel %s: message %q does not resolve", w.eventType, ref)
			}
			if got, want := msg["name"], events.CEType(w.eventType); got != want {
				t.Errorf("message name = %v, want the CloudEvents type %s", got, want)
			}
			if got := lookup(msg, "payload", "schemaFormat"); got != "application/schema+json;version=draft-2020-12" {
				t.Errorf("payload schemaFormat = %v", got)
			}
			if got, want := lookup(msg, "payload", "schema", "$ref"), "../events/schemas/"+w.eventType+".json"; got != want {
				t.Errorf("payload schema = %v, want %s", got, want)
			}
			var ops int
			for _, op := range doc["operations"].(map[string]any) {
				op := op.(map[string]any)
				if lookup(op, "channel", "$ref") == "#/channels/"+w.eventType {
					ops++
					if op["action"] != w.action {
						t.Errorf("operation on %s: action %v, want %s", w.eventType, op["action"], w.action)
					}
				}
			}
			if ops != 1 {
				t.Errorf("%d operations on channel %s, want 1", ops, w.eventType)
			}
		})
	}

	// Every reference resolves: local ones within the document, the others
	// to files that exist.
	walk(doc, func(ref string) {
		if strings.HasPrefix(ref, "#") {
			if resolve(doc, ref) == nil {
				t.Errorf("$ref %q does not resolve", ref)
			}
			return
		}
		file, _, _ := strings.Cut(ref, "#")
		if _, err := os.Stat(filepath.Join(filepath.Dir(asyncAPIPath), file)); err != nil {
			t.Errorf("$ref %q: %v", ref, err)
		}
	})

	// Every header the envelope sets is described.
	described, _ := lookup(doc, "components", "schemas", "cloudEventHeaders", "properties").(map[string]any)
	full := events.Envelope{
		ID: "e", Type: "orderflow.order.accepted.v1", Source: events.SourceOrders, Subject: "o",
		Time: time.Now(), Sequence: 1, Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	for name := range full.Msg().Header {
		if _, ok := described[name]; !ok {
			t.Errorf("header %s is not described in cloudEventHeaders", name)
		}
	}
}

// TestSchemasAreAllReferenced: no schema file is left out of the document.
func TestSchemasAreAllReferenced(t *testing.T) {
	b, err := os.ReadFile(asyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("schemas/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files (%v)", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var refs []string
	walk(doc, func(ref string) { refs = append(refs, ref) })
	for _, f := range files {
		name := filepath.Base(f)
		if name == "order.json" {
			continue // the shared fields, referenced by the other order schemas
		}
		if !slices.Contains(refs, "../events/schemas/"+name) {
			t.Errorf("schema %s is not referenced by %s", name, asyncAPIPath)
		}
	}
}

// lookup follows keys into nested maps; nil when one is missing.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// resolve follows a local reference ("#/a/b"); nil when it does not
// resolve.
func resolve(doc map[string]any, ref string) any {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	keys := strings.Split(ptr, "/")
	for i, k := range keys {
		keys[i] = strings.ReplaceAll(strings.ReplaceAll(k, "~1", "/"), "~0", "~")
	}
	return lookup(doc, keys...)
}

// walk calls f with every $ref in v.
func walk(v any, f func(ref string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				f(s)
				continue
			}
			walk(x, f)
		}
	case []any:
		for _, x := range v {
			walk(x, f)
		}
	}
}
