package cdr

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A process that dies leaves its calls open in the journal, with what the
// last interim knew; the next one closes each with a record, once.
func TestJournalSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cdr.jsonl.journal")
	j, err := OpenFileJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := j.Open(); err != nil || len(left) != 0 {
		t.Fatalf("a new journal holds %v %v", left, err)
	}
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for _, id := range []string{"a", "b", "c"} {
		if err := j.Start(Record{ID: id, Caller: "alice", Callee: "1000", Start: t0}); err != nil {
			t.Fatal(err)
		}
	}
	answer := t0.Add(5 * time.Second)
	j.Interim("a", Interim{Answer: &answer, Direction: "browser-to-sip", At: answer})
	j.Interim("a", Interim{Media: []LegMedia{{PacketsIn: 500, PacketsOut: 490}}, Node: "local", At: t0.Add(15 * time.Second)})
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := j.End("b"); err != nil {
		t.Fatal(err)
	}
	// c's start was appended after a flush; a line cut short by the crash
	// follows it.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":"call","id":"d","r":{"id":"d","sta`)
	f.Close()
	// The process dies here: no Close.

	store, _ := NewStore(filepath.Join(dir, "cdr.jsonl"))
	j2, err := OpenFileJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Recover(j2, store, "control plane restart", func(r Record) []LegMedia {
		if r.ID == "c" {
			return []LegMedia{{PacketsIn: 7}} // the node still had c's session
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("recovered %d: %v", n, err)
	}
	recs := map[string]Record{}
	for _, r := range store.List() {
		recs[r.ID] = r
	}
	a := recs["a"]
	if !a.Recovered || a.Cause != 500 || a.Reason != "control plane restart" || a.Answer == nil || !a.Answer.Equal(answer) ||
		a.Direction != "browser-to-sip" || a.Node != "local" || len(a.Media) != 1 || a.Media[0].PacketsIn != 500 ||
		!a.End.Equal(t0.Add(15*time.Second)) || a.Duration != 10 {
		t.Fatalf("a: %+v", a)
	}
	if c := recs["c"]; c.Answer != nil || c.Media[0].PacketsIn != 7 || c.Duration != 0 {
		t.Fatalf("c: %+v", c)
	}
	if _, ok := recs["b"]; ok {
		t.Fatal("b ended cleanly and got a second record")
	}
	j2.Close()
	j3, _ := OpenFileJournal(path)
	defer j3.Close()
	if left, err := j3.Open(); err != nil || len(left) != 0 {
		t.Fatalf("after recovery the journal still holds %v %v", left, err)
	}
}

// The file holds the calls in progress, not the history: it stays small
// however many calls came and went.
func TestJournalBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := OpenFileJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Open()
	j.Start(Record{ID: "long", Start: time.Now()})
	for i := range 5000 {
		id := "call" + string(rune('a'+i%26)) + time.Now().Format("150405.000000000")
		j.Start(Record{ID: id, Start: time.Now()})
		j.Interim(id, Interim{Media: []LegMedia{{PacketsIn: uint64(i)}}, At: time.Now()})
		j.End(id)
		if i%500 == 0 {
			j.Flush()
		}
	}
	j.Flush()
	st, _ := os.Stat(path)
	if st.Size() > 1024 {
		t.Fatalf("journal of one call in progress is %d bytes", st.Size())
	}
}
