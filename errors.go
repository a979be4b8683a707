// Package orderflow holds what every part of the order service shares: the
// domain error type. Each technology lives in a package of its own below.
package orderflow

import (
	"errors"
	"fmt"
)

// Error codes, each mapped to one HTTP status in the api package.
const (
	EINVALID       = "invalid"       // malformed or missing input
	ENOTFOUND      = "not_found"     // no such resource
	ECONFLICT      = "conflict"      // not possible in the resource's current state
	EUNPROCESSABLE = "unprocessable" // well-formed but contradicts an earlier request
	EUNAVAILABLE   = "unavailable"   // a dependency does not answer; retry later
	EINTERNAL      = "internal"      // a bug or an unexpected failure
)

// Error is a domain error: a code, a message fit for the caller, and, for
// invalid input, the field at fault (a JSON pointer-like path such as
// "items[0].quantity").
type Error struct {
	Code    string
	Message string
	Field   string
}

// Error tells the code, the field at fault if any, and the message.
func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID *Error naming the field at fault.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}
