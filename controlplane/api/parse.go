package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxBody bounds a request body: an SDP offer with many candidates and
// video is a few kilobytes.
const maxBody = 64 << 10

// CallRequest is the body of POST /v1/calls.
type CallRequest struct {
	// To is the callee: a user name, a number or a sip: URI. Required.
	To string `json:"to"`
	// From is the caller's user name (default "api").
	From string `json:"from,omitempty"`
	// Offer is the browser's complete (non-trickle) SDP offer. Required.
	Offer string `json:"offer"`
	// Early returns the answer as soon as the callee sends early media.
	Early bool `json:"early,omitempty"`
}

// DTMFRequest is the body of POST /v1/calls/{id}/dtmf.
type DTMFRequest struct {
	// Digits to send: 0-9, *, #, A-D; at most maxDigits.
	Digits string `json:"digits"`
}

// maxDigits bounds one DTMF request.
const maxDigits = 32

// ErrTooLarge is returned for a body past maxBody (HTTP 413).
var ErrTooLarge = fmt.Errorf("body larger than %d bytes", maxBody)

// errUnsupportedType is returned for a body that is not JSON (HTTP 415).
var errUnsupportedType = errors.New("unsupported media type")

// checkJSONType accepts a request whose Content-Type is application/json
// or a +json type, or absent (curl and scripts often omit it; a browser's
// fetch always sends one, text/plain for a bare string, which is refused:
// that also keeps cross-origin "simple" requests out).
func checkJSONType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return fmt.Errorf("%w %q: send application/json", errUnsupportedType, ct)
	}
	return nil
}

// readBody reads and checks a JSON request body into v, answering the
// request itself with 413, 415 or 400 (problem details) and returning
// false when it is not acceptable. check, if not nil, validates v.
func readBody[T any](w http.ResponseWriter, r *http.Request, v *T, check func(*T) error) bool {
	if err := checkJSONType(r); err != nil {
		WriteProblem(w, r, http.StatusUnsupportedMediaType, "", err.Error())
		return false
	}
	err := decode(http.MaxBytesReader(w, r.Body, maxBody), v)
	if err == nil && check != nil {
		err = check(v)
	}
	switch {
	case errors.Is(err, ErrTooLarge):
		WriteProblem(w, r, http.StatusRequestEntityTooLarge, "", err.Error())
		return false
	case err != nil:
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, err.Error())
		return false
	}
	return true
}

// decode reads one JSON object into v, refusing unknown fields, trailing
// data and oversized bodies (ErrTooLarge).
func decode(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || len(b) > maxBody {
		return ErrTooLarge
	}
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON: %w", err)
	}
	if dec.More() {
		return errors.New("bad JSON: data after the object")
	}
	return nil
}

// ParseCallRequest reads and checks a POST /v1/calls body.
func ParseCallRequest(r io.Reader) (CallRequest, error) {
	var c CallRequest
	if err := decode(r, &c); err != nil {
		return CallRequest{}, err
	}
	if err := checkCallRequest(&c); err != nil {
		return CallRequest{}, err
	}
	return c, nil
}

func checkCallRequest(c *CallRequest) error {
	c.To = strings.TrimSpace(c.To)
	switch {
	case c.To == "":
		return errors.New(`"to" is required`)
	case len(c.To) > 256:
		return errors.New(`"to" is too long`)
	case len(c.From) > 128:
		return errors.New(`"from" is too long`)
	case strings.TrimSpace(c.Offer) == "":
		return errors.New(`"offer" is required: the browser's SDP offer`)
	case !strings.HasPrefix(strings.TrimSpace(c.Offer), "v=0"):
		return errors.New(`"offer" is not SDP (it must start with v=0)`)
	}
	return nil
}

// ParseDTMFRequest reads and checks a POST /v1/calls/{id}/dtmf body.
func ParseDTMFRequest(r io.Reader) (string, error) {
	var d DTMFRequest
	if err := decode(r, &d); err != nil {
		return "", err
	}
	if err := checkDTMFRequest(&d); err != nil {
		return "", err
	}
	return d.Digits, nil
}

func checkDTMFRequest(d *DTMFRequest) error {
	if d.Digits == "" {
		return errors.New(`"digits" is required`)
	}
	if len(d.Digits) > maxDigits {
		return fmt.Errorf(`"digits" has more than %d digits`, maxDigits)
	}
	for _, c := range d.Digits {
		if !strings.ContainsRune("0123456789*#ABCDabcd", c) {
			return fmt.Errorf(`"digits": %q is not a DTMF digit (0-9, *, #, A-D)`, c)
		}
	}
	d.Digits = strings.ToUpper(d.Digits)
	return nil
}
