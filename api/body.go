package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/workflows"
)

// maxBodyBytes bounds every request body: an order of 50 lines fits many
// times over, and nothing the API accepts needs more.
const maxBodyBytes = 64 << 10

// msgUnknownField is the message of an unknown-field error; refineItems
// matches on it.
const msgUnknownField = "unknown field"

// readBody reads the request body, refusing more than maxBodyBytes with a
// 413 before or while reading, never after buffering an unbounded body.
func readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxBodyBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &orderflow.Error{Code: codeRequestTimeout, Field: "body",
			Message: fmt.Sprintf("the request body did not arrive within %s", readTimeout)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, orderflow.FieldErrorf("body", "the request body ended before it was complete")
	case err != nil:
		// The error names the connection's addresses: not the client's
		// business, and no use to it.
		return nil, orderflow.FieldErrorf("body", "could not read the request body")
	}
	return body, nil
}

func tooLarge() error {
	return &orderflow.Error{Code: codeTooLarge, Field: "body", Message: fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes)}
}

// decodeBody reads the body and decodes it strictly into v. An empty body
// is an error unless optional, in which case v is left as it is.
func decodeBody(c echo.Context, v any, optional bool) ([]byte, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return body, nil
		}
		return nil, orderflow.FieldErrorf("body", "a JSON request body is required")
	}
	if err := checkContentType(c.Request()); err != nil {
		return nil, err
	}
	if string(bytes.TrimSpace(body)) == "null" {
		return nil, orderflow.FieldErrorf("body", "must be a JSON object, not null")
	}
	return body, decodeStrict(body, v)
}

// checkContentType refuses a request whose body is not labelled JSON in
// UTF-8 (415): a form, text or XML body that happens to hold JSON is not
// taken as an order, and a body in another charset would be read wrongly.
func checkContentType(r *http.Request) error {
	values := r.Header.Values(echo.HeaderContentType)
	unsupported := func(format string, args ...any) error {
		return &orderflow.Error{Code: codeUnsupportedMediaType, Field: echo.HeaderContentType, Message: fmt.Sprintf(format, args...)}
	}
	// RFC 9110 15.5.16: a coding the server does not decode is a 415. A
	// body compressed or labelled so is not read as if it were plain.
	for _, coding := range r.Header.Values(echo.HeaderContentEncoding) {
		for c := range strings.SplitSeq(coding, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return &orderflow.Error{Code: codeUnsupportedMediaType, Field: echo.HeaderContentEncoding,
					Message: fmt.Sprintf("%q is not decoded here: send the body unencoded", c)}
			}
		}
	}
	if len(values) == 0 {
		return unsupported("header is required with a body: send %s", echo.MIMEApplicationJSON)
	}
	if len(values) > 1 {
		return unsupported("header is given more than once: send one, %s", echo.MIMEApplicationJSON)
	}
	mt, params, err := mime.ParseMediaType(values[0])
	switch {
	case err != nil:
		return unsupported("%q is not a media type: send %s", values[0], echo.MIMEApplicationJSON)
	case mt != echo.MIMEApplicationJSON:
		return unsupported("must be %s, not %s", echo.MIMEApplicationJSON, mt)
	case params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8") && !strings.EqualFold(params["charset"], "utf8"):
		return unsupported("charset must be utf-8, not %s", params["charset"])
	}
	return nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data, and turns every failure into an EINVALID error
// naming the field at fault ("body" when no field is to blame).
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return orderflow.FieldErrorf("body", "unexpected data after the JSON value")
	}
	keys := &tokens{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	keys.dec.UseNumber() // numbers are skipped, never parsed
	if err := checkKeys(keys, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	return checkText(reflect.ValueOf(v), "")
}

// tokens reads the tokens of data, each with the bytes it was read from.
type tokens struct {
	dec  *json.Decoder
	data []byte
}

// next returns the next token and its text in data (with the separator
// and spaces before it).
func (t *tokens) next() (json.Token, []byte, error) {
	start := t.dec.InputOffset()
	tok, err := t.dec.Token()
	return tok, t.data[start:t.dec.InputOffset()], err
}

// checkKeys walks the JSON value it reads alongside the type t it was
// decoded into, and refuses, naming the field, an object key given twice
// or one that is a field's name in other letter case, and a string that is
// not valid UTF-8. encoding/json keeps the last of duplicate keys and
// matches names regardless of case, so
// {"customer_id":"c_ada","CUSTOMER_ID":"c_alan"} would order for c_alan
// while a proxy or a log that reads the exact key sees c_ada; and it turns
// bytes that are not UTF-8, and an unpaired surrogate escape ("\ud800"),
// into U+FFFD without a word, so that "1 Main \xff St" would be stored as
// "1 Main \ufffd St". It runs on JSON that decoded already, so a token
// error cannot happen; it would only end the check.
func checkKeys(dec *tokens, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		t = nil // it reads its JSON its own way: only repeated keys are checked
	}
	tok, raw, err := dec.next()
	if err != nil {
		return nil
	}
	switch tok {
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.dec.More(); i++ {
			if err := checkKeys(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, _ = dec.dec.Token()
	case json.Delim('{'):
		var (
			fields map[string]reflect.Type
			elem   reflect.Type // of a map's values
		)
		switch {
		case t != nil && t.Kind() == reflect.Struct:
			fields = jsonFields(t, map[string]reflect.Type{})
		case t != nil && t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.dec.More() {
			tok, raw, err := dec.next()
			if err != nil {
				return nil
			}
			key, _ := tok.(string)
			name := key
			if path != "" {
				name = path + "." + key
			}
			if bad := badText(raw); bad != "" {
				return orderflow.FieldErrorf(name, "field name must be valid UTF-8 (found %s)", bad)
			}
			if seen[key] {
				return orderflow.FieldErrorf(name, "is given more than once")
			}
			seen[key] = true
			ft, known := fields[key]
			if elem != nil {
				ft = elem
			}
			if fields != nil && !known {
				for f := range fields {
					if strings.EqualFold(f, key) {
						return orderflow.FieldErrorf(name, "%s (field names are case-sensitive: %q)", msgUnknownField, f)
					}
				}
			}
			if err := checkKeys(dec, ft, name); err != nil {
				return err
			}
		}
		_, _ = dec.dec.Token()
	default:
		if _, ok := tok.(string); ok {
			if bad := badText(raw); bad != "" {
				return orderflow.FieldErrorf(path, "must be valid UTF-8 (found %s)", bad)
			}
		}
	}
	return nil
}

// badText describes what in raw, the JSON text of a string, is not valid
// UTF-8 once decoded: bytes that are not UTF-8, or an escaped surrogate
// (\ud800-\udfff) that is not the first half of a pair followed by its
// second. It returns "" when there is none. raw is valid JSON, so every
// \u has four hex digits.
func badText(raw []byte) string {
	if !utf8.Valid(raw) {
		return "bytes that are not UTF-8"
	}
	hex4 := func(b []byte) rune {
		n, _ := strconv.ParseUint(string(b[:4]), 16, 32)
		return rune(n)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if raw[i] != 'u' {
			continue
		}
		r := hex4(raw[i+1:])
		i += 4 // the last hex digit
		switch {
		case r < 0xd800 || r > 0xdfff:
			continue
		case r < 0xdc00 && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u':
			if low := hex4(raw[i+3:]); low >= 0xdc00 && low <= 0xdfff {
				i += 6
				continue
			}
		}
		return fmt.Sprintf("the unpaired surrogate escape \\u%04x", r)
	}
	return ""
}

// jsonFields adds the JSON names of struct type t's fields, and of the
// fields its embedded structs promote, to fields, with their types.
func jsonFields(t reflect.Type, fields map[string]reflect.Type) map[string]reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			jsonFields(f.Type, fields)
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			jsonFields(f.Type.Elem(), fields)
			continue
		case !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// checkText refuses, naming the field, a string anywhere in v that holds a
// NUL or another control character but tab, newline and carriage return:
// PostgreSQL cannot store a NUL, so such a value would fail the order
// later, deep in a workflow, instead of now, here, as a 400. (Invalid UTF-8
// cannot get this far: checkKeys refuses it.)
func checkText(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return checkText(v.Elem(), path)
		}
	case reflect.String:
		if i := strings.IndexFunc(v.String(), badRune); i >= 0 {
			return orderflow.FieldErrorf(path, "must not contain control characters (found %q at byte %d)", v.String()[i:i+1], i)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := checkText(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if path != "" {
				name = path + "." + name
			}
			if err := checkText(v.Field(i), name); err != nil {
				return err
			}
		}
	}
	return nil
}

func badRune(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f
}

// pathID reads an ID from the path. An ID with a control character or not
// in UTF-8 names nothing that can exist: 404, without asking the database
// (which would refuse the value with an error, not an empty answer).
func pathID(c echo.Context, what string) (string, error) {
	id, ok := pathParam(c, "id")
	if !ok || !utf8.ValidString(id) || strings.IndexFunc(id, badRune) >= 0 {
		return "", orderflow.Errorf(orderflow.ENOTFOUND, "no %s %q", what, id)
	}
	return id, nil
}

// pathParam is a path parameter, percent-decoded. echo decodes it only
// when the request's escaping is Go's own; otherwise (r%5Fpizza, %ff) it
// routes on the raw path and hands over the raw segment. ok is false for
// a segment that is not validly escaped.
func pathParam(c echo.Context, name string) (string, bool) {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v, true
	}
	dec, err := url.PathUnescape(v)
	return dec, err == nil
}

// singleQueryValues refuses, on every route, a query string that does not
// parse (a bad percent-escape, a semicolon: net/url would drop the pair,
// and with it the filter the client asked for) and a query parameter
// given more than once (?status=a&status=b): none the API reads takes
// several values, and which of them counts would be the client's guess.
// Of several repeated parameters it names the first in name order.
func singleQueryValues(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := checkQuery(c.Request().URL.RawQuery); err != nil {
			return err
		}
		var repeated string
		for name, values := range c.QueryParams() {
			if len(values) > 1 && (repeated == "" || name < repeated) {
				repeated = name
			}
		}
		if repeated != "" {
			return orderflow.FieldErrorf(repeated, "is given %d times: give it once", len(c.QueryParams()[repeated]))
		}
		return next(c)
	}
}

// checkQuery refuses a raw query string that url.ParseQuery would not take
// whole, naming the parameter at fault ("query" when its name itself is
// malformed).
func checkQuery(raw string) error {
	for pair := range strings.SplitSeq(raw, "&") {
		key, value, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(strings.SplitN(key, ";", 2)[0])
		if err != nil || name == "" && key != "" {
			return orderflow.FieldErrorf("query", "parameter name %q is not validly percent-escaped", key)
		}
		if strings.Contains(pair, ";") {
			return orderflow.FieldErrorf(name, "contains a semicolon: separate parameters with &, or escape it as %%3B")
		}
		if _, err := url.QueryUnescape(value); err != nil {
			return orderflow.FieldErrorf(name, "value %q is not validly percent-escaped", value)
		}
	}
	return nil
}

// jsonError turns an encoding/json error into an EINVALID *orderflow.Error.
func jsonError(err error) *orderflow.Error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return orderflow.FieldErrorf("body", "malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return orderflow.FieldErrorf("body", "malformed JSON: unexpected end of input")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return orderflow.FieldErrorf(field, "must be %s, not %s", describeType(typ.Type), typ.Value)
	}
	// DisallowUnknownFields reports a plain error with no exported type.
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(rest); uerr == nil {
			if name == "" {
				name = `""` // a member with an empty name, as the body spells it
			}
			return orderflow.FieldErrorf(name, msgUnknownField)
		}
	}
	return orderflow.FieldErrorf("body", "invalid JSON: %v", err)
}

// describeType names a Go type the way a JSON client thinks of it.
func describeType(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.String()
}

// reasonBody is the optional body of reject and cancel.
type reasonBody struct {
	Reason string `json:"reason"`
}

// maxReasonLen bounds a rejection or cancellation reason; it ends up in
// events and customer notifications.
const maxReasonLen = workflows.MaxReasonLength

// decodeReason reads an optional {reason} body: the reason to record, def
// when the body gives none (a missing body or a blank reason), and the
// reason given, "" then.
func decodeReason(c echo.Context, def string) (reason, given string, err error) {
	var b reasonBody
	if _, err := decodeBody(c, &b, true); err != nil {
		return "", "", err
	}
	given = strings.TrimSpace(b.Reason)
	switch {
	case given == "":
		return def, "", nil
	case len([]rune(given)) > maxReasonLen:
		return "", "", orderflow.FieldErrorf("reason", "must be at most %d characters", maxReasonLen)
	}
	return given, given, nil
}

// decodeNoBody accepts an empty body or an empty JSON object (labelled
// JSON, as every body), so that a client sending "{}" by habit is not
// refused while anything else is.
func decodeNoBody(c echo.Context) error {
	var none struct{}
	_, err := decodeBody(c, &none, true)
	return err
}
