//go:build !linux

package main

import (
	"context"
	"errors"
)

// floor needs Linux (RUSAGE_THREAD, accept4, CPU affinity).
func (b *bench) floor(ctx context.Context, rep *report) error {
	return errors.New("the floor scenario runs on Linux only")
}

// measureFloor needs Linux too (--with-floor).
func (b *bench) measureFloor(ctx context.Context) (*floorResults, error) {
	return nil, errors.New("the floor runs on Linux only")
}
