package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
)

// Problem is an RFC 9457 problem detail, the body of every error response.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Field names the request field at fault, for invalid input.
	Field string `json:"field,omitempty"`
	// Code is the orderflow error code (invalid, not_found, conflict, ...).
	Code string `json:"code,omitempty"`
}

// codeTooLarge marks a request body over the API's limit. It is a
// transport limit rather than a domain rule, so it lives here and not among
// orderflow's codes; it still travels as an *orderflow.Error so that the
// problem can name the field ("body").
const codeTooLarge = "too_large"

// codeUnsupportedMediaType marks a request body that is not labelled
// JSON; like codeTooLarge it is HTTP's, and it names its field
// ("Content-Type").
const codeUnsupportedMediaType = "unsupported_media_type"

// codeNotYet marks a decision that came too early (the restaurant has not
// been notified of the order yet): a 409 with Retry-After, unlike the
// conflicts that stay.
const codeNotYet = "not_yet"

// codeMethodNotAllowed marks a request whose route exists but not for its
// method; like codeTooLarge it is HTTP's, not the domain's.
const codeMethodNotAllowed = "method_not_allowed"

// codeRequestTimeout marks a request body that stopped arriving before the
// server's read timeout; like codeTooLarge it is HTTP's.
const codeRequestTimeout = "request_timeout"

var codeStatus = map[string]int{
	codeTooLarge:             http.StatusRequestEntityTooLarge,
	codeRequestTimeout:       http.StatusRequestTimeout,
	codeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	codeNotYet:               http.StatusConflict,
	orderflow.EINVALID:       http.StatusBadRequest,
	orderflow.ENOTFOUND:      http.StatusNotFound,
	orderflow.ECONFLICT:      http.StatusConflict,
	orderflow.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	orderflow.EUNAVAILABLE:   http.StatusServiceUnavailable,
	orderflow.EINTERNAL:      http.StatusInternalServerError,
}

// errorHandler is the one place errors become HTTP responses. Internal
// errors are logged here, once, and shown only as "internal error".
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := Problem{Instance: c.Request().URL.Path}
	var (
		de *orderflow.Error
		he *echo.HTTPError
	)
	switch {
	case errors.As(err, &de):
		p.Status, p.Code, p.Detail, p.Field = codeStatus[de.Code], de.Code, de.Message, de.Field
		if p.Status == 0 {
			p.Status = http.StatusInternalServerError
		}
	case errors.As(err, &he):
		p.Status = he.Code
		if msg, ok := he.Message.(string); ok {
			p.Detail = msg
		}
		// Echo's own errors (no route, wrong method, body too large, ...)
		// get the code of their status, so clients can switch on code
		// alone.
		for code, status := range codeStatus {
			if status == p.Status && status < 500 && code != codeNotYet {
				p.Code = code
			}
		}
		if p.Status == http.StatusMethodNotAllowed {
			p.Code = codeMethodNotAllowed
			allowHead(c.Response().Header())
		}
	case db.Unavailable(err):
		// The database is down or going away: like Temporal's absence, a
		// 503 the client may retry, not a bug of ours.
		p.Status, p.Code, p.Detail = http.StatusServiceUnavailable, orderflow.EUNAVAILABLE, "the database is unavailable; retry"
	default:
		p.Status = http.StatusInternalServerError
	}
	switch p.Code {
	case orderflow.EUNAVAILABLE:
		s.logger.Warn("dependency unavailable", "method", c.Request().Method, "path", c.Path(), "err", err)
		c.Response().Header().Set("Retry-After", "1")
	case codeNotYet:
		c.Response().Header().Set("Retry-After", "1")
	}
	if p.Status >= 500 && p.Code != orderflow.EUNAVAILABLE {
		s.logger.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		p.Detail, p.Code, p.Field = "internal error", orderflow.EINTERNAL, ""
	}
	p.Title = http.StatusText(p.Status)
	p.Type = "about:blank"
	if p.Code != "" {
		p.Type = "https://orderflow.dev/problems/" + p.Code
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	if c.Request().Method == http.MethodHead {
		return
	}
	if err := c.Echo().JSONSerializer.Serialize(c, p, ""); err != nil {
		s.logger.Warn("write problem", "err", err)
	}
}
