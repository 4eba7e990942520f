package origins

import (
	"net/http/httptest"
	"testing"
)

func TestCheck(t *testing.T) {
	for s, ok := range map[string]bool{
		"*": true, "https://app.example.com": true, "http://127.0.0.1:*": true, "https://*.example.com": true,
		"http://localhost:8080": true, "https://app.example.com/": true,
		"app.example.com": false, "ftp://x.example.com": false, "https://*.*.example.com": false,
		"https://app.example.com/path": false, "https://u@app.example.com": false, "https://x.com?q": false, "": false,
	} {
		if err := Check(s); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok %v", s, err, ok)
		}
	}
}

// RFC 6455 section 10.2: the server checks a browser's Origin.
func TestAllowWebSocket(t *testing.T) {
	l, err := New([]string{"https://app.example.com", "http://127.0.0.1:*"})
	if err != nil {
		t.Fatal(err)
	}
	none, _ := New(nil)
	any, _ := New([]string{"*"})
	for _, tc := range []struct {
		list   *List
		origin string
		ok     bool
	}{
		{l, "", true}, // not a browser
		{l, "https://app.example.com", true},
		{l, "http://127.0.0.1:5173", true},
		{l, "http://strait.example.org:8080", true}, // same origin
		{l, "https://evil.example.net", false},
		{l, "https://app.example.com.evil.net", false},
		{none, "https://app.example.com", false},
		{none, "http://strait.example.org:8080", true},
		{any, "https://evil.example.net", true},
	} {
		r := httptest.NewRequest("GET", "http://strait.example.org:8080/ws", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := tc.list.AllowWebSocket(r); got != tc.ok {
			t.Errorf("origin %q: %v, want %v", tc.origin, got, tc.ok)
		}
	}
}
