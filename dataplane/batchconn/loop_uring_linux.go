package batchconn

import "errors"

type uringLoop[T any] struct{ Loop[T] }

func newUringLoop[T any](cfg LoopConfig[T]) (*uringLoop[T], error) {
	return nil, errors.New("batchconn: io_uring not implemented yet")
}
