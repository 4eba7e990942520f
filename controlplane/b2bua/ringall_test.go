package b2bua

import "testing"

// RFC 3261 section 16.7 step 6, as a B2BUA that rang every registration
// reports it.
func TestBestFailure(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{
		{nil, 480},
		{[]int{486, 486}, 486},
		{[]int{480, 486}, 486},
		{[]int{486, 480}, 486},
		{[]int{408, 480}, 408},
		{[]int{503, 486}, 486},
		{[]int{500, 503}, 500},
		{[]int{407, 480}, 480},
		{[]int{401}, 401},
		{[]int{486, 484}, 484},
		{[]int{488, 486}, 486},
		{[]int{488, 480}, 488},
		{[]int{302, 486}, 302},
	} {
		if got := bestFailure(tc.codes); got != tc.want {
			t.Errorf("bestFailure(%v) = %d, want %d", tc.codes, got, tc.want)
		}
	}
	if got := callerFailure(407); got != 403 {
		t.Errorf("a device's challenge reaches the caller as %d, want 403", got)
	}
	if got := callerFailure(603); got != 603 {
		t.Errorf("603 reaches the caller as %d", got)
	}
}
