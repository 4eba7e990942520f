package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// decode reads one JSON object into v, refusing unknown fields, trailing
// data and oversized bodies.
func decode(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("body larger than %d bytes", maxBody)
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
	c.To = strings.TrimSpace(c.To)
	switch {
	case c.To == "":
		return CallRequest{}, errors.New(`"to" is required`)
	case len(c.To) > 256:
		return CallRequest{}, errors.New(`"to" is too long`)
	case len(c.From) > 128:
		return CallRequest{}, errors.New(`"from" is too long`)
	case strings.TrimSpace(c.Offer) == "":
		return CallRequest{}, errors.New(`"offer" is required: the browser's SDP offer`)
	case !strings.HasPrefix(strings.TrimSpace(c.Offer), "v=0"):
		return CallRequest{}, errors.New(`"offer" is not SDP (it must start with v=0)`)
	}
	return c, nil
}

// ParseDTMFRequest reads and checks a POST /v1/calls/{id}/dtmf body.
func ParseDTMFRequest(r io.Reader) (string, error) {
	var d DTMFRequest
	if err := decode(r, &d); err != nil {
		return "", err
	}
	if d.Digits == "" {
		return "", errors.New(`"digits" is required`)
	}
	if len(d.Digits) > maxDigits {
		return "", fmt.Errorf(`"digits" has more than %d digits`, maxDigits)
	}
	for _, c := range d.Digits {
		if !strings.ContainsRune("0123456789*#ABCDabcd", c) {
			return "", fmt.Errorf(`"digits": %q is not a DTMF digit (0-9, *, #, A-D)`, c)
		}
	}
	return strings.ToUpper(d.Digits), nil
}
