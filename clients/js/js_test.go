package js

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestHandlerServesTheModule(t *testing.T) {
	onDisk, err := os.ReadFile("strait.js")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/strait.js", nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET: %s %q", res.Status, res.Header.Get("Content-Type"))
	}
	if string(body) != string(onDisk) || string(Source()) != string(onDisk) {
		t.Fatal("served bytes differ from strait.js")
	}
	if !strings.Contains(string(body), "export class Strait") {
		t.Fatal("not the client module")
	}
	rec = httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/strait.js", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
		t.Fatalf("POST: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}
