package metrics

import "strconv"

// Label values that come from the network are mapped onto closed sets
// here, so that no peer can make a series per message (issue 8: 1 000
// made-up methods made 2 000 series, memory in strait and in every
// Prometheus that scrapes it).

// methods are the SIP methods counted under their own name (RFC 3261 and
// the extensions in the IANA registry Strait may see); any other token
// counts as "other".
var methods = map[string]bool{
	"INVITE": true, "ACK": true, "BYE": true, "CANCEL": true, "OPTIONS": true, "REGISTER": true,
	"PRACK": true, "SUBSCRIBE": true, "NOTIFY": true, "PUBLISH": true, "INFO": true, "REFER": true,
	"MESSAGE": true, "UPDATE": true,
}

// methodLabel bounds a method label.
func methodLabel(method string) string {
	if methods[method] {
		return method
	}
	return "other"
}

// codes are the status codes of the IANA SIP response code registry:
// counted under their own number; any other number counts as its class
// ("4xx"), and anything outside 100-699 as "other".
var codes = map[int]bool{
	100: true, 180: true, 181: true, 182: true, 183: true, 199: true,
	200: true, 202: true, 204: true,
	300: true, 301: true, 302: true, 305: true, 380: true,
	400: true, 401: true, 402: true, 403: true, 404: true, 405: true, 406: true, 407: true, 408: true,
	410: true, 412: true, 413: true, 414: true, 415: true, 416: true, 417: true, 420: true, 421: true,
	422: true, 423: true, 424: true, 428: true, 429: true, 430: true, 433: true, 436: true, 437: true,
	438: true, 439: true, 440: true, 469: true, 470: true, 480: true, 481: true, 482: true, 483: true,
	484: true, 485: true, 486: true, 487: true, 488: true, 489: true, 491: true, 493: true, 494: true,
	500: true, 501: true, 502: true, 503: true, 504: true, 505: true, 513: true, 555: true, 580: true,
	600: true, 603: true, 604: true, 606: true, 607: true, 608: true,
}

// codeLabel bounds a status code label.
func codeLabel(code int) string {
	switch {
	case codes[code]:
		return strconv.Itoa(code)
	case code >= 100 && code <= 699:
		return strconv.Itoa(code/100) + "xx"
	}
	return "other"
}
