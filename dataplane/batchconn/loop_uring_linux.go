package batchconn

import "errors"

// ErrUringNotBuilt is what asking for an io_uring Loop returns while this
// build has none: ModeAuto falls back to mmsg, ModeUring fails with it,
// and the tests skip the io_uring mode (the kernel is not the reason).
var ErrUringNotBuilt = errors.New("batchconn: io_uring Loop not in this build")

type uringLoop[T any] struct{ Loop[T] }

func newUringLoop[T any](cfg LoopConfig[T]) (*uringLoop[T], error) {
	return nil, ErrUringNotBuilt
}
