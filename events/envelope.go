package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The order context's stream: every order event, kept for days, so that it
// is also the archive other contexts replay from.
const (
	OrderStream        = "ORDER_EVENTS"
	OrderSubjectPrefix = "orderflow.order."
	// OrderSubjects matches every order event subject.
	OrderSubjects = OrderSubjectPrefix + ">"
)

// The delivery context's stream, which the order context consumes.
const (
	DeliveryStream        = "DELIVERY_EVENTS"
	DeliverySubjectPrefix = "orderflow.delivery."
	DeliverySubjects      = DeliverySubjectPrefix + ">"
	// DeliveryCompleted is the delivery context's event that a courier
	// handed the order over.
	DeliveryCompleted = "delivery.completed"
)

// CloudEvents sources: the context that emits the event.
const (
	SourceOrders   = "/orderflow/orders"
	SourceDelivery = "/orderflow/delivery"
)

// NATS header names of the CloudEvents NATS protocol binding, binary mode:
// every attribute is a "ce-" header and the payload is the message body.
const (
	HeaderMsgID       = nats.MsgIdHdr // JetStream de-duplication: the event ID
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderSubject     = "ce-subject"
	HeaderTime        = "ce-time"
	// HeaderSequence is the sequence extension: the aggregate's version, so
	// a consumer can tell an event whose predecessor it has not yet seen.
	HeaderSequence    = "ce-sequence"
	HeaderContentType = "content-type"
	// HeaderTraceparent is the W3C trace context (the distributedtracing
	// extension), so a consumer's work joins the producer's trace.
	HeaderTraceparent = "traceparent"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// Envelope is one event on the bus: its CloudEvents attributes and its JSON
// payload.
type Envelope struct {
	ID      string    // ce-id, also Nats-Msg-Id
	Type    string    // ce-type, e.g. orderflow.order.accepted.v1
	Source  string    // ce-source
	Subject string    // ce-subject: the aggregate's ID (the order ID)
	Time    time.Time // ce-time
	// Sequence is the aggregate's version: 1 for its first event, one more
	// for each next one. Zero means the producer numbers nothing.
	Sequence    int64
	Traceparent string
	Data        json.RawMessage
}

// EventType is the event's type without prefix and version, e.g.
// "order.accepted" for "orderflow.order.accepted.v1"; it is what the outbox
// stores and what subjects are built from.
func (e Envelope) EventType() string {
	t := strings.TrimPrefix(e.Type, "orderflow.")
	if i := strings.LastIndex(t, ".v"); i > 0 {
		if _, err := strconv.Atoi(t[i+2:]); err == nil {
			t = t[:i]
		}
	}
	return t
}

// NATSSubject is the subject the envelope is published on:
// "orderflow.<type>.<aggregate ID>", e.g.
// orderflow.order.accepted.1b2f2e36-8e85-5371-bfb7-67afd130e766.
func (e Envelope) NATSSubject() string { return Subject(e.EventType(), e.Subject) }

// Subject is the NATS subject of an event type ("order.accepted") about one
// aggregate.
func Subject(eventType, aggregateID string) string {
	return "orderflow." + eventType + "." + aggregateID
}

// Msg encodes the envelope as a NATS message in CloudEvents binary mode,
// with Nats-Msg-Id set to the event ID so JetStream drops a republished
// copy inside its duplicate window.
func (e Envelope) Msg() *nats.Msg {
	m := nats.NewMsg(e.NATSSubject())
	h := m.Header
	h.Set(HeaderMsgID, e.ID)
	h.Set(HeaderSpecVersion, SpecVersion)
	h.Set(HeaderID, e.ID)
	h.Set(HeaderType, e.Type)
	h.Set(HeaderSource, e.Source)
	h.Set(HeaderSubject, e.Subject)
	h.Set(HeaderTime, e.Time.UTC().Format(time.RFC3339Nano))
	if e.Sequence > 0 {
		h.Set(HeaderSequence, strconv.FormatInt(e.Sequence, 10))
	}
	if e.Traceparent != "" {
		h.Set(HeaderTraceparent, e.Traceparent)
	}
	h.Set(HeaderContentType, "application/json")
	m.Data = e.Data
	return m
}

// ErrNotCloudEvent marks a message that is not a CloudEvent this package
// can read: a poison message for any consumer.
var ErrNotCloudEvent = errors.New("not a CloudEvent")

// Decode reads a message published by Msg (or by any producer following the
// CloudEvents NATS binding in binary mode). A message that lacks a required
// attribute or carries a malformed one wraps ErrNotCloudEvent.
func Decode(header nats.Header, data []byte) (Envelope, error) {
	e := Envelope{
		ID:          header.Get(HeaderID),
		Type:        header.Get(HeaderType),
		Source:      header.Get(HeaderSource),
		Subject:     header.Get(HeaderSubject),
		Traceparent: header.Get(HeaderTraceparent),
		Data:        data,
	}
	bad := func(format string, args ...any) (Envelope, error) {
		return Envelope{}, fmt.Errorf("%w: %s", ErrNotCloudEvent, fmt.Sprintf(format, args...))
	}
	if v := header.Get(HeaderSpecVersion); v != SpecVersion {
		return bad("%s is %q, want %q", HeaderSpecVersion, v, SpecVersion)
	}
	switch {
	case e.ID == "":
		return bad("no %s", HeaderID)
	case e.Type == "":
		return bad("no %s", HeaderType)
	case e.Source == "":
		return bad("no %s", HeaderSource)
	}
	if v := header.Get(HeaderTime); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return bad("%s %q is not RFC 3339", HeaderTime, v)
		}
		e.Time = t
	}
	if v := header.Get(HeaderSequence); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return bad("%s %q is not a positive integer", HeaderSequence, v)
		}
		e.Sequence = n
	}
	if ct := header.Get(HeaderContentType); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return bad("%s is %q, want application/json", HeaderContentType, ct)
	}
	if len(data) > 0 && !json.Valid(data) {
		return bad("payload is not JSON")
	}
	return e, nil
}

// StructuredJSON renders the envelope in the CloudEvents JSON format
// (structured mode): attributes and extensions at the top level, the
// payload under "data". `orderflow events tail` prints one per line.
func (e Envelope) StructuredJSON() ([]byte, error) {
	type structured struct {
		SpecVersion     string          `json:"specversion"`
		ID              string          `json:"id"`
		Type            string          `json:"type"`
		Source          string          `json:"source"`
		Subject         string          `json:"subject,omitempty"`
		Time            string          `json:"time,omitempty"`
		DataContentType string          `json:"datacontenttype"`
		Sequence        string          `json:"sequence,omitempty"`
		Traceparent     string          `json:"traceparent,omitempty"`
		Data            json.RawMessage `json:"data,omitempty"`
	}
	s := structured{
		SpecVersion: SpecVersion, ID: e.ID, Type: e.Type, Source: e.Source, Subject: e.Subject,
		DataContentType: "application/json", Traceparent: e.Traceparent, Data: e.Data,
	}
	if !e.Time.IsZero() {
		s.Time = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.Sequence > 0 {
		// The sequence extension's value is a string (CloudEvents
		// "sequence" extension, type String), compared numerically here.
		s.Sequence = strconv.FormatInt(e.Sequence, 10)
	}
	return json.Marshal(s)
}
