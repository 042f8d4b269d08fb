package loadgen

import (
	"math"
	"math/bits"
)

// Histogram is a log-linear (HDR-style) histogram of non-negative int64 values
// (nanoseconds here): exact below 128, then 64 linear sub-buckets per power of two, so a
// reported value is at most 1/64 (1.6%) above the true one. Fixed memory (about 20 KiB),
// no allocation per sample; the zero value is ready to use. Not safe for concurrent use:
// each goroutine records into its own and the results are merged.
type Histogram struct {
	counts [histLen]uint64
	total  uint64
	min    int64
	max    int64
	sum    float64
}

const (
	histSubBits = 7                      // 128 sub-buckets in the first (linear) range
	histHalf    = 1 << (histSubBits - 1) // 64 sub-buckets per further power of two
	histMaxBits = 44                     // values are clamped below 2^44 ns (about 4.9 hours)
	histMax     = int64(1)<<histMaxBits - 1
	histLen     = (histMaxBits-histSubBits)*histHalf + 2*histHalf
)

func histIndex(v uint64) int {
	b := bits.Len64(v) - histSubBits
	if b < 0 {
		b = 0
	}
	return b*histHalf + int(v>>uint(b))
}

// histHigh is the highest value that falls into bucket i.
func histHigh(i int) int64 {
	if i < 2*histHalf {
		return int64(i)
	}
	b := i/histHalf - 1
	sub := int64(i - b*histHalf)
	return (sub+1)<<uint(b) - 1
}

// Record adds one value; negative values count as 0, values above about 4.9 hours are clamped.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	} else if v > histMax {
		v = histMax
	}
	h.counts[histIndex(uint64(v))]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Min and Max are the exact extremes (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest recorded value.
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact mean (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns the value at quantile q (0 < q ≤ 1): the highest value of the bucket
// holding the ceil(q·n)-th smallest sample, clamped to [Min, Max]. 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	} else if rank > h.total {
		rank = h.total
	}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i]
		if cum >= rank {
			return min(max(histHigh(i), h.min), h.max)
		}
	}
	return h.max
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i := range o.counts {
		h.counts[i] += o.counts[i]
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }
