// Package dialplan decides who may call what: the toll-fraud policy an
// SBC applies before a call leaves for a trunk. A [Plan] is the operator's
// rules (destination patterns allowed globally and per user, patterns
// denied by default, per-user limits); a [Guard] enforces one Plan with
// per-user counters of calls in progress and recent call attempts, and
// takes a new Plan at run time (SIGHUP) without forgetting its counters.
//
// # Destinations
//
// A destination is the user part of a Request-URI (or the API's "to"). It
// is normalised before any rule sees it, so that an encoding the PBX would
// undo cannot slip past a rule: percent escapes are decoded (RFC 3261
// section 19.1.2: "%2B44..." is "+44..."), parameters after ';' are cut
// (";phone-context=...", ";isub=..."), letters are lower-cased, and a
// destination made only of dial characters loses its visual separators
// ("-", ".", "(", ")" and spaces, RFC 3966 section 5.1.1), so
// "(00)44-20..." is "004420...". Control characters and bad escapes are
// refused.
//
// # Patterns
//
// A pattern without a leading '_' matches one destination exactly
// (case-insensitive): "echo", "1000". A pattern with a leading '_' uses
// Asterisk's extension-pattern syntax, which PBX operators know:
//
//	X     any digit 0-9
//	Z     any digit 1-9
//	N     any digit 2-9
//	[..]  one character of a class: "[1-5]", "[0289]", "[+*#]"
//	.     one or more further characters (last only)
//	!     zero or more further characters (last only)
//	-     ignored (readability: "_+44-20-XXXX-XXXX")
//
// Any other character matches itself, letters case-insensitively.
// Examples: "_+44." (UK numbers in E.164), "_NXXNXXXXXX" (a ten-digit
// North American number), "_1XXX" (four-digit extensions from 1000),
// "_!" (everything).
//
// # Rules
//
// A call from user U to destination D is allowed when, in order:
//
//  1. D matches one of U's own allow patterns (--allow-dial U:PATTERN) or
//     a global one (--allow-dial PATTERN): allowed;
//  2. otherwise, when any global allow pattern is configured (allowlist
//     mode): refused;
//  3. otherwise, when D matches a deny pattern, the built-in
//     [DefaultDeny] international prefixes or --deny-dial: refused;
//  4. otherwise: allowed.
//
// So with no configuration every national destination and internal
// extension is allowed and international ones ("+", "00", "011") are not;
// a user may be granted more; and an operator who lists global allow
// patterns gets a strict allowlist.
package dialplan
