package restapi

import (
	"encoding/json"
	"errors"
	"strconv"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/clusterapi"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
	"github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/pinner"
)

// StatusError carries an explicit HTTP status for an error.
type StatusError struct {
	Code       int
	Err        error
	RetryAfter int // seconds; 0 = no Retry-After header
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// errorBody is IPFS Cluster's error object (spec §5.1).
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// statusOf is the one place where errors become HTTP statuses.
func statusOf(err error) (int, int) {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return se.Code, se.RetryAfter
	case errors.Is(err, pinner.ErrNotFound):
		return fasthttp.StatusNotFound, 0
	case errors.Is(err, ErrUploadStalled), errors.Is(err, ErrUploadTooSlow):
		// Before multipart's "malformed body", which wraps them.
		return fasthttp.StatusRequestTimeout, 0
	case errors.Is(err, unixfs.ErrUploadLimit):
		return fasthttp.StatusRequestEntityTooLarge, 0
	case errors.Is(err, syscall.ENOSPC):
		// The store went read-only on a full disk (docs/reliability.md):
		// 507 says so; a retry does not help before a restart with room.
		return fasthttp.StatusInsufficientStorage, 0
	case errors.Is(err, blockfanout.ErrNotEnoughPeers), errors.Is(err, pinner.ErrNotEnoughPeers), errors.Is(err, clusterapi.ErrUnavailable):
		return fasthttp.StatusServiceUnavailable, 5
	case errors.Is(err, ErrBadParam), errors.Is(err, pinner.ErrBadRequest),
		errors.Is(err, multipart.ErrMalformed),
		errors.Is(err, multipart.ErrTooLong),
		errors.Is(err, unixfs.ErrBadOption),
		errors.Is(err, unixfs.ErrBadEntry),
		errors.Is(err, unixfs.ErrNoFiles),
		errors.Is(err, ingest.ErrCIDRefused),
		errors.Is(err, errCarWrap), errors.Is(err, errCarNotFile), errors.Is(err, errCarParts),
		isCarError(err):
		return fasthttp.StatusBadRequest, 0
	}
	return fasthttp.StatusInternalServerError, 0
}

// message is the text clients see. A pinset miss must read exactly
// "pin is not part of the pinset": the ctl keys on it.
func message(err error) string {
	if errors.Is(err, pinner.ErrNotFound) {
		return pinner.ErrNotFound.Error()
	}
	var pe *paramError
	if errors.As(err, &pe) {
		return pe.msg
	}
	return err.Error()
}

// writeError answers a request that has not started a response.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	code, retry := statusOf(err)
	if code == fasthttp.StatusMethodNotAllowed {
		// gorilla/mux's 405 has no body and no Content-Type (spec §1.2).
		ctx.SetStatusCode(code)
		return
	}
	if retry > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retry))
	}
	writeJSON(ctx, code, errorBody{Code: code, Message: message(err)})
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = fasthttp.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Code: code, Message: "cannot encode response: " + err.Error()})
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// isCarError reports a CAR that is wrong, as opposed to a failure of ours.
func isCarError(err error) bool {
	for _, e := range []error{car.ErrBlockTooLarge, car.ErrHeaderTooLarge, car.ErrHashMismatch, car.ErrUnsupportedHash,
		car.ErrBadRoots, car.ErrMissingBlock, car.ErrUnsupportedCodec, car.ErrUnsupportedVersion, car.ErrMalformed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
