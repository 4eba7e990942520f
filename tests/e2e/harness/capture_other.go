//go:build !linux

package harness

import "errors"

func startCapture(func(int, int, []byte)) (func(), error) {
	return nil, errors.New("packet capture needs Linux")
}
