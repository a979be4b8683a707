package consumer

import (
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/events"
)

// PermanentError is a handler's error that no retry can fix: the kit
// terminates the message, which sends it to the dead letters.
type PermanentError struct{ Err error }

// Error says the failure is permanent, and why.
func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent: the message is terminated at once
// instead of retried. A handler returns it for an event it can never take,
// such as a payload without the fields it needs.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// IsPermanent reports whether err's chain holds a *PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryError asks for the message again after Delay. It is not a failure:
// it is logged at debug level and counted as deferred, not retried.
type RetryError struct {
	Delay  time.Duration
	Reason string
}

// Error tells when to retry, and why.
func (e *RetryError) Error() string {
	return fmt.Sprintf("retry after %s: %s", e.Delay, e.Reason)
}

// RetryAfter returns an error that has the kit redeliver the message after
// d, e.g. because the event's time has not come yet. The wait is kept by
// JetStream, so it survives a restart. Each redelivery still counts toward
// MaxDeliver.
func RetryAfter(d time.Duration, reason string) error {
	return &RetryError{Delay: d, Reason: reason}
}

// ValidateSchema checks an event's payload as a reader does
// (events.ValidateReceived), for Config.Validate: members the schema does
// not name are allowed, so a producer a release ahead that adds one does
// not dead-letter its events. An event type without a schema passes: a
// consumer that reads a whole stream ignores the types it does not know
// instead of dead-lettering them. A version of a known type other than the
// one the schemas describe (orderflow.order.placed.v2 against .v1) is
// refused: read as the old version it could be misread, and dead-lettered
// it waits, visible, for a consumer that reads it (dlq redrive), or to be
// skipped while the producer publishes both versions.
func ValidateSchema(env events.Envelope) error {
	t := env.EventType()
	err := events.ValidateReceived(t, env.Data)
	if errors.Is(err, events.ErrUnknownEventType) {
		return nil
	}
	if want := events.CEType(t); env.Type != want {
		return fmt.Errorf("a version this consumer does not read (it reads %s)", want)
	}
	return err
}
