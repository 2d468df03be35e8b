package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultBodyLimit caps request bodies of endpoints that name no other limit.
const DefaultBodyLimit = 64 << 10

// Decode reads r's body, at most limit bytes, into a T, strictly: the body
// must be application/json, valid UTF-8, exactly one JSON object, and name no
// field T does not have. Every failure is a *Problem with a 4xx status whose
// detail says what to fix, ready for Fail.
func Decode[T any](w http.ResponseWriter, r *http.Request, limit int64) (T, error) {
	var v T
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return v, NewProblem(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"send the body as JSON with the header Content-Type: application/json")
	}
	// Bodies are read as sent: a compressed one would be taken for bad JSON,
	// or worse, for good JSON mislabelled. RFC 9110 §15.5.16: 415, and say
	// which codings are accepted.
	for _, ce := range r.Header.Values("Content-Encoding") {
		if !strings.EqualFold(strings.TrimSpace(ce), "identity") {
			return v, NewProblem(http.StatusUnsupportedMediaType, "unsupported_content_encoding",
				"send the body uncompressed, without a Content-Encoding header").
				WithHeader("Accept-Encoding", "identity")
		}
	}

	// A body that trickles in must not hold a connection forever (slowloris).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(30 * time.Second))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return v, NewProblem(http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the request body is larger than the limit of %d bytes", limit))
	}
	if err != nil {
		return v, NewProblem(http.StatusBadRequest, "invalid_body", "could not read the request body: "+err.Error())
	}
	return v, decodeBytes(body, &v)
}

func decodeBytes(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return invalidJSON("the request body is empty; send a JSON object")
	case !utf8.Valid(body):
		// encoding/json would silently turn bad bytes into U+FFFD; refuse instead.
		return invalidJSON("the request body is not valid UTF-8")
	case trimmed[0] != '{':
		return invalidJSON("the request body must be a JSON object")
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON(describe(err))
	}
	// Decode stops after the first value; anything but white space after it is an error.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalidJSON("unexpected data after the JSON object")
	}
	return nil
}

func invalidJSON(detail string) *Problem {
	return NewProblem(http.StatusBadRequest, "invalid_json", detail)
}

// describe turns encoding/json's errors into sentences that name the field.
func describe(err error) string {
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("malformed JSON at byte %d: %s", e.Offset, strings.TrimPrefix(e.Error(), "json: "))
	}
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if e.Field == "" {
			return fmt.Sprintf("expected %s, got a JSON %s", kind(e.Type), e.Value)
		}
		return fmt.Sprintf("field %q must be %s, not a JSON %s", e.Field, kind(e.Type), e.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON body ends too early"
	}
	msg := err.Error()
	if field, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown field " + field + "; check the field's spelling against the API documentation"
	}
	return "malformed JSON: " + strings.TrimPrefix(msg, "json: ")
}

func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "a " + t.String()
	}
}
