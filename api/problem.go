package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/orderflow/orderflow"
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

var codeStatus = map[string]int{
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
	default:
		p.Status = http.StatusInternalServerError
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
