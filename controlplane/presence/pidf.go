package presence

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PIDF documents (RFC 3863) carry presence over SIP: PUBLISH bodies and
// NOTIFY bodies of the presence event package (RFC 3856). Strait's five
// statuses map onto the basic status (offline is closed, the rest open)
// and, for away, busy and dnd, an RPID activity (RFC 4480 section 6.1:
// away, busy; dnd has no activity of its own and goes as <other>dnd</other>,
// which RFC 4480 allows for values it does not list).

// MaxPIDF bounds a PIDF document read from the network.
const MaxPIDF = 64 << 10

// EncodePIDF returns s as a PIDF document for entity (a SIP URI).
func EncodePIDF(entity string, s State) []byte {
	basic := "open"
	if s.Status == "offline" {
		basic = "closed"
	}
	var act string
	switch s.Status {
	case "away":
		act = "<rpid:away/>"
	case "busy":
		act = "<rpid:busy/>"
	case "dnd":
		act = "<rpid:other>dnd</rpid:other>"
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="`)
	xml.EscapeText(&b, []byte(entity))
	b.WriteString(`">` + "\n")
	b.WriteString(`<tuple id="strait"><status><basic>` + basic + `</basic></status>`)
	if s.Note != "" {
		b.WriteString(`<note>`)
		xml.EscapeText(&b, []byte(s.Note))
		b.WriteString(`</note>`)
	}
	b.WriteString("</tuple>\n")
	if act != "" {
		b.WriteString(`<dm:person id="p-strait"><rpid:activities>` + act + "</rpid:activities></dm:person>\n")
	}
	b.WriteString("</presence>\n")
	return b.Bytes()
}

// errNoPresence: the document holds no presence element.
var errNoPresence = errors.New("pidf: no presence element")

// DecodePIDF reads a PIDF document's status and note, as Strait's
// statuses: closed (or no open tuple) is offline; open is available,
// unless an RPID activity says away, busy (busy, on-the-phone, meeting,
// and the like) or dnd. Namespaces are matched by local name, as
// presence servers and phones vary in their prefixes. It fails on a
// document past MaxPIDF, malformed XML, or one without presence.
func DecodePIDF(doc []byte) (status, note string, err error) {
	if len(doc) > MaxPIDF {
		return "", "", fmt.Errorf("pidf: %d bytes, at most %d", len(doc), MaxPIDF)
	}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	dec.Strict = true
	var (
		path          []string
		seenPresence  bool
		open          bool
		activity      string
		text          strings.Builder
		otherActivity bool
	)
	for depth := 0; ; {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", "", fmt.Errorf("pidf: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth > 32 {
				return "", "", errors.New("pidf: nested too deep")
			}
			name := t.Name.Local
			path = append(path, name)
			text.Reset()
			if depth == 1 {
				if name != "presence" {
					return "", "", errNoPresence
				}
				seenPresence = true
			}
			if len(path) >= 2 && path[len(path)-2] == "activities" {
				otherActivity = name == "other"
				switch name {
				case "away", "vacation", "holiday", "sleeping":
					activity = "away"
				case "busy", "on-the-phone", "meeting", "appointment", "performance", "presentation", "worship":
					if activity == "" {
						activity = "busy"
					}
				}
			}
		case xml.CharData:
			if text.Len() < MaxNote*4 {
				text.Write(t)
			}
		case xml.EndElement:
			depth--
			name := path[len(path)-1]
			v := strings.TrimSpace(text.String())
			switch {
			case name == "basic" && v == "open":
				open = true
			case name == "note" && note == "" && v != "":
				note = v
			case name == "other" && otherActivity && strings.EqualFold(v, "dnd"):
				activity = "dnd"
			}
			path = path[:len(path)-1]
			text.Reset()
		}
	}
	if !seenPresence {
		return "", "", errNoPresence
	}
	if err := Check("available", note); err != nil {
		note = "" // a note Strait would not take from its own users is dropped
	}
	switch {
	case open && activity != "":
		return activity, note, nil
	case open:
		return "available", note, nil
	}
	return "offline", note, nil // closed, or no open tuple
}
