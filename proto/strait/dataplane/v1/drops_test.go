package dataplanev1

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestDropReasonsMatchTheProto: drops_gen.go lists exactly the drop_*
// fields of LegCounters, in order, and its accessors read and write the
// right field. It fails when dataplane.proto gained or lost a drop counter
// and `go generate ./proto/...` was not run.
func TestDropReasonsMatchTheProto(t *testing.T) {
	var fields []protoreflect.FieldDescriptor
	fds := (&LegCounters{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		if fd := fds.Get(i); strings.HasPrefix(string(fd.Name()), "drop_") {
			fields = append(fields, fd)
		}
	}
	if len(fields) != int(NumDropReasons) {
		t.Fatalf("LegCounters has %d drop_ fields, drops_gen.go %d: run go generate ./proto/...", len(fields), NumDropReasons)
	}
	var sum uint64
	for r := range NumDropReasons {
		fd := fields[r]
		if want := strings.TrimPrefix(string(fd.Name()), "drop_"); r.String() != want {
			t.Errorf("reason %d is %q, the proto's field is %s", r, r, fd.Name())
		}
		c := &LegCounters{}
		v := 1000 + uint64(r)
		c.AddDrop(r, v)
		c.AddDrop(r, 1)
		if got := c.ProtoReflect().Get(fd).Uint(); got != v+1 {
			t.Errorf("AddDrop(%v) set %s to %d, want %d", r, fd.Name(), got, v+1)
		}
		if c.Drop(r) != v+1 || c.Dropped() != v+1 {
			t.Errorf("Drop(%v) = %d, Dropped() = %d, want %d", r, c.Drop(r), c.Dropped(), v+1)
		}
		sum += v
	}
	all := &LegCounters{PacketsIn: 7}
	for r := range NumDropReasons {
		all.ProtoReflect().Set(fields[r], protoreflect.ValueOfUint64(1000+uint64(r)))
	}
	if all.Dropped() != sum {
		t.Fatalf("Dropped() = %d, want %d (every drop_ field, nothing else)", all.Dropped(), sum)
	}
	if NumDropReasons.String() != "unknown" {
		t.Fatalf("an out-of-range reason is %q", NumDropReasons)
	}
}
