package cdr

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreAppendsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.jsonl")
	s, err := NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, r := range []Record{
		{ID: "a", Caller: "alice", Callee: "bob", Start: now, End: now, Cause: 486, Reason: "callee busy here"},
		{ID: "b", Caller: "alice", Callee: "echo", Start: now, Answer: &now, End: now.Add(time.Second), Duration: 1, Cause: 200,
			Media: []LegMedia{{PacketsIn: 50, PacketsOut: 50}}},
	} {
		if err := s.Add(r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if got := s.List(); len(got) != 2 || got[1].ID != "b" {
		t.Fatalf("List %+v", got)
	}
	s.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var r Record
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &r) != nil || r.Media[0].PacketsIn != 50 || r.Answer == nil {
		t.Fatalf("file:\n%s", b)
	}
	// Reopening appends.
	s, _ = NewStore(path)
	s.Add(Record{ID: "c"})
	s.Close()
	b, _ = os.ReadFile(path)
	if strings.Count(string(b), "\n") != 3 {
		t.Fatalf("reopened store did not append:\n%s", b)
	}
}

func TestStoreBounded(t *testing.T) {
	s, _ := NewStore("")
	for i := 0; i < maxKept+10; i++ {
		s.Add(Record{ID: "x"})
	}
	if n := len(s.List()); n != maxKept {
		t.Fatalf("%d records kept, want %d", n, maxKept)
	}
}
