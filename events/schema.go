package events

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schemas holds the JSON Schema (draft 2020-12) of every event payload, one
// file per event type ("order.placed.json", "delivery.completed.json"),
// plus order.json, the fields every order event shares, which the order
// schemas reference. docs/asyncapi.yaml references the same files.
//
//go:embed schemas/*.json
var Schemas embed.FS

// schemaBase is the URL the embedded schemas are compiled under, so that
// their relative references ("order.json") resolve among them. Nothing is
// ever fetched from it.
const schemaBase = "https://orderflow.invalid/events/schemas/"

// ErrUnknownEventType is returned by ValidatePayload for an event type
// without a schema.
var ErrUnknownEventType = errors.New("unknown event type")

// compiled is every event type's schema, compiled once; tolerant the same
// schemas for a reader, which allow members they do not name.
var (
	compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) { return compileSchemas(false) })
	tolerant = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) { return compileSchemas(true) })
)

func compileSchemas(tolerant bool) (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// "format" (uuid, date-time) is an assertion here, not a mere annotation.
	c.AssertFormat()
	c.UseLoader(noLoader{})
	files, err := fs.Glob(Schemas, "schemas/*.json")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := Schemas.ReadFile(f)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", f, err)
		}
		if tolerant {
			allowAdditional(doc)
		}
		if err := c.AddResource(schemaBase+path.Base(f), doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", f, err)
		}
	}
	out := make(map[string]*jsonschema.Schema)
	for _, t := range append(append([]string(nil), OrderEventTypes...), DeliveryCompleted) {
		s, err := c.Compile(schemaBase + t + ".json")
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", t, err)
		}
		out[t] = s
	}
	return out, nil
}

// ValidatePayload checks an event's JSON payload against its type's schema
// (eventType as the outbox stores it, e.g. "order.accepted"): the contract
// a producer writes to, which names every member. The error names every
// violation with its place in the payload, e.g. `order.placed payload: at
// /items: minItems: got 0, want 1`.
func ValidatePayload(eventType string, payload []byte) error {
	return validate(compiled, eventType, payload)
}

// ValidateReceived checks a payload as a reader does: against the same
// schema, except that members it does not name are allowed (a tolerant
// reader). Adding an optional member is the one change a producer may make
// within a type's version, and a consumer a release behind, as in a rolling
// deploy, must still take such an event; any other change is a new version
// of the type (orderflow.order.placed.v2).
func ValidateReceived(eventType string, payload []byte) error {
	return validate(tolerant, eventType, payload)
}

func validate(set func() (map[string]*jsonschema.Schema, error), eventType string, payload []byte) error {
	schemas, err := set()
	if err != nil {
		return fmt.Errorf("compile event schemas: %w", err)
	}
	s, ok := schemas[eventType]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownEventType, eventType)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%s payload is not JSON: %w", eventType, err)
	}
	err = s.Validate(doc)
	var verr *jsonschema.ValidationError
	if errors.As(err, &verr) {
		var problems []string
		leaves(verr, &problems)
		return fmt.Errorf("%s payload: %s", eventType, strings.Join(problems, "; "))
	}
	return err
}

// leaves collects the innermost violations, those that say what is wrong
// rather than which part of the schema failed.
func leaves(e *jsonschema.ValidationError, out *[]string) {
	if len(e.Causes) == 0 {
		// "at '/items/0/quantity': minimum: got 0, want 1"
		*out = append(*out, strings.Replace(e.Error(), "at '':", "at '/':", 1))
		return
	}
	for _, c := range e.Causes {
		leaves(c, out)
	}
}

// allowAdditional drops every "additionalProperties": false from a schema
// document, at every depth (the payload's nested objects, such as an
// order's items, are as open to additions as its top level).
func allowAdditional(doc any) {
	switch v := doc.(type) {
	case map[string]any:
		if b, ok := v["additionalProperties"].(bool); ok && !b {
			delete(v, "additionalProperties")
		}
		for _, e := range v {
			allowAdditional(e)
		}
	case []any:
		for _, e := range v {
			allowAdditional(e)
		}
	}
}

// noLoader refuses to load anything: every schema is embedded, so a
// reference that is not is a mistake, not a download.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not among the embedded schemas", url)
}
