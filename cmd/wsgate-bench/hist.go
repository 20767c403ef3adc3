package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a lock-free log-linear latency histogram: values under 128 ns are
// exact, above that each power of two is split into 128 buckets (≤ 0.8 %
// relative error). Memory is fixed (≈ 58 KiB) whatever the sample count.
type hist struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	sum     atomic.Uint64 // ns
	max     atomic.Uint64 // ns
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	exp := bits.Len64(v) - histSubBits - 1 // v>>exp is in [histSub, 2*histSub)
	return (exp+1)*histSub + int(v>>uint(exp)) - histSub
}

// histLow is the smallest value of bucket i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	exp := i/histSub - 1
	return uint64(i%histSub+histSub) << uint(exp)
}

// record adds one duration (negative durations count as 0).
func (h *hist) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.buckets[histIndex(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// percentiles is the JSON summary of a histogram, in microseconds.
type percentiles struct {
	Count  uint64  `json:"count"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

// summary computes the percentiles (each the low bound of the bucket the
// rank falls in; max is exact). It is meant to run once recording stopped.
func (h *hist) summary() *percentiles {
	n := h.count.Load()
	p := &percentiles{Count: n}
	if n == 0 {
		return p
	}
	p.MeanUs = float64(h.sum.Load()) / float64(n) / 1e3
	p.MaxUs = float64(h.max.Load()) / 1e3
	targets := []struct {
		q   float64
		dst *float64
	}{{0.50, &p.P50Us}, {0.90, &p.P90Us}, {0.99, &p.P99Us}, {0.999, &p.P999Us}}
	var seen uint64
	t := 0
	for i := 0; i < histBuckets && t < len(targets); i++ {
		seen += h.buckets[i].Load()
		for t < len(targets) && float64(seen) >= targets[t].q*float64(n) {
			*targets[t].dst = float64(histLow(i)) / 1e3
			t++
		}
	}
	for ; t < len(targets); t++ {
		*targets[t].dst = p.MaxUs
	}
	return p
}
