package storage

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// php-memcached's item flags (php_memcached_private.h): the low 4 bits are
// the PHP type of the value, bits 4 to 15 its internal flags, bits 16 to 31
// the application's own (Memcached::OPT_USER_FLAGS), which say nothing about
// the bytes.
const (
	memcTypeMask   = 0xf
	memcTypeString = 0 // MEMC_VAL_IS_STRING: a PHP string, stored as is

	memcCompressed = 1 << 4 // MEMC_VAL_COMPRESSED
	memcZlib       = 1 << 5 // MEMC_VAL_COMPRESSION_ZLIB
	memcFastLZ     = 1 << 6 // MEMC_VAL_COMPRESSION_FASTLZ
	memcZstd       = 1 << 7 // MEMC_VAL_COMPRESSION_ZSTD (php-memcached >= 3.2 built with zstd)
)

// errMemcValue is wrapped by every error about a value the store cannot turn
// into session data; Read wraps it with ErrNotFound, since PHP's \Memcached
// then returns false and Symfony starts a new session.
var errMemcValue = errors.New("undecodable value")

// memcDecoder turns a memcached item (flags and value) into session data the
// way php-memcached's \Memcached::get does for a string (s_decompress_value in
// php_memcached.c), which is what Symfony's MemcachedSessionHandler reads
// through. php-memcached's native session handler (save_handler memcached)
// writes the data raw with flags 0, which decodes as itself.
//
// A compressed value is the uncompressed length as 4 little-endian bytes
// (php-memcached copies a host-order uint32_t; every platform PHP runs
// memcached on is little-endian) followed by FastLZ, zlib or zstd data.
// Decompression is bounded by maxSize: a length over it is ErrTooLarge
// before any work, and no decompressor writes past the length.
type memcDecoder struct {
	maxSize int64
	// zstdOnce creates the zstd decoder on first use: most deployments
	// never see zstd (Debian's php-memcached is built without it), and a
	// decoder holds buffers.
	zstdOnce func() (*zstd.Decoder, error)
}

// newMemcDecoder returns a decoder bounded by maxSize (> 0).
func newMemcDecoder(maxSize int64) *memcDecoder {
	return &memcDecoder{
		maxSize: maxSize,
		zstdOnce: sync.OnceValues(func() (*zstd.Decoder, error) {
			// DecodeAll's output and window never exceed maxSize, whatever a
			// frame header claims.
			return zstd.NewReader(nil,
				zstd.WithDecoderMaxMemory(uint64(maxSize)),
				zstd.WithDecoderMaxWindow(uint64(max(maxSize, zstd.MinWindowSize))),
				zstd.WithDecoderConcurrency(0))
		}),
	}
}

// decode returns the session data in value. Errors wrap ErrTooLarge (the
// data is over maxSize) or errMemcValue.
func (d *memcDecoder) decode(flags uint32, value []byte) ([]byte, error) {
	if t := flags & memcTypeMask; t != memcTypeString {
		// An int, a serialized array...: Symfony's read would not get a
		// string, so there is no session.
		return nil, fmt.Errorf("php-memcached type %d, not a string: %w", t, errMemcValue)
	}
	if flags&memcCompressed == 0 {
		if int64(len(value)) > d.maxSize {
			return nil, fmt.Errorf("over limit %d: %w", d.maxSize, ErrTooLarge)
		}
		return value, nil
	}
	if len(value) < 4 {
		return nil, fmt.Errorf("compressed value of %d bytes has no length: %w", len(value), errMemcValue)
	}
	n := int64(binary.LittleEndian.Uint32(value))
	if n > d.maxSize {
		return nil, fmt.Errorf("uncompressed length %d over limit %d: %w", n, d.maxSize, ErrTooLarge)
	}
	src := value[4:]
	var (
		out []byte
		err error
		alg string
	)
	// php-memcached tries the bits in this order.
	switch {
	case flags&memcFastLZ != 0:
		alg = "fastlz"
		out, err = fastlzDecode(src, int(n))
	case flags&memcZstd != 0:
		alg = "zstd"
		out, err = d.zstd(src, int(n))
	case flags&memcZlib != 0:
		alg = "zlib"
		out, err = zlibDecode(src, int(n))
	default:
		return nil, fmt.Errorf("compressed with no known algorithm (flags %#x): %w", flags, errMemcValue)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", alg, errMemcValue, err)
	}
	return out, nil
}

// errOverLength is a decompressor's output growing past the length the value
// declared: php-memcached's decompressors fail the same way (they are given
// a buffer of that length).
var errOverLength = errors.New("data longer than declared")

// zlibDecode inflates a zlib stream (php-memcached calls zlib's compress()),
// checking its Adler-32, into at most n bytes. Less than n is accepted, as
// uncompress() does.
func zlibDecode(src []byte, n int) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	// One byte more than allowed tells a longer stream from an exact one.
	out := make([]byte, n+1)
	m := 0
	for {
		k, err := r.Read(out[m:])
		m += k
		switch {
		case m > n:
			return nil, errOverLength
		case err == io.EOF:
			// Only now has the reader checked the Adler-32.
			return out[:m], nil
		case err != nil:
			return nil, err
		}
	}
}

// zstd decodes one or more zstd frames (php-memcached calls ZSTD_compress())
// into at most n bytes.
func (d *memcDecoder) zstd(src []byte, n int) ([]byte, error) {
	dec, err := d.zstdOnce()
	if err != nil {
		return nil, err
	}
	out, err := dec.DecodeAll(src, make([]byte, 0, n))
	if err != nil {
		return nil, err
	}
	if len(out) > n {
		return nil, errOverLength
	}
	return out, nil
}

// fastlzDecode decompresses FastLZ data (Ariya Hidayat's format, the
// fastlz.c php-memcached bundles) into at most n bytes; the level (1 or 2)
// is in the first byte's top 3 bits. It checks every read and every
// back-reference, so hostile input fails instead of reading or writing out
// of bounds, and allocates n bytes at most.
//
// Both levels are a sequence of instructions, the first always a literal
// run. The top 3 bits of an instruction byte are 0 for a literal run of
// (byte & 31) + 1 bytes; otherwise they are a match length code L and the
// low 5 bits the distance's high bits. A match copies (L + 2) bytes, L == 7
// taking its length from more bytes (level 1: one byte added; level 2:
// bytes added until one is not 255), from distance ((byte & 31) << 8) +
// next byte + 1. Level 2 alone has far matches: low bits 31 and next byte
// 255 are followed by a 16-bit big-endian distance d, meaning d + 8192.
func fastlzDecode(src []byte, n int) ([]byte, error) {
	if len(src) == 0 {
		return nil, errors.New("fastlz: empty")
	}
	level := src[0]>>5 + 1
	if level != 1 && level != 2 {
		return nil, fmt.Errorf("fastlz: unknown level %d", level)
	}
	errTrunc := errors.New("fastlz: truncated")
	out := make([]byte, 0, n)
	ip := 0
	next := func() (int, error) {
		if ip >= len(src) {
			return 0, errTrunc
		}
		b := src[ip]
		ip++
		return int(b), nil
	}
	ctrl := int(src[0] & 31)
	ip = 1
	for {
		if ctrl < 32 {
			run := ctrl + 1
			if len(src)-ip < run {
				return nil, errTrunc
			}
			if len(out)+run > n {
				return nil, errOverLength
			}
			out = append(out, src[ip:ip+run]...)
			ip += run
		} else {
			length := ctrl>>5 + 2
			dist := (ctrl & 31) << 8
			if ctrl>>5 == 7 {
				for {
					b, err := next()
					if err != nil {
						return nil, err
					}
					length += b
					if level == 1 || b != 255 {
						break
					}
					if length > n {
						// A run of 255s longer than the output could
						// hold: stop before the sum can overflow.
						return nil, errOverLength
					}
				}
			}
			b, err := next()
			if err != nil {
				return nil, err
			}
			if level == 2 && b == 255 && dist == 31<<8 {
				hi, err := next()
				if err != nil {
					return nil, err
				}
				lo, err := next()
				if err != nil {
					return nil, err
				}
				dist = hi<<8 + lo + 8191
			} else {
				dist += b
			}
			dist++
			if dist > len(out) {
				return nil, errors.New("fastlz: reference before the start")
			}
			if len(out)+length > n {
				return nil, errOverLength
			}
			// Byte by byte: a match may overlap what it produces (a run).
			from := len(out) - dist
			for i := 0; i < length; i++ {
				out = append(out, out[from+i])
			}
		}
		if ip >= len(src) {
			return out, nil
		}
		ctrl = int(src[ip])
		ip++
	}
}
