package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// streamEvents serves what watch delivers as server-sent events until the
// client goes, the source closes, or emit says an event was the last.
// emit maps a value to its event name and JSON payload; send false skips
// the value. A comment line every sseKeepalive keeps proxies from timing
// the stream out.
func streamEvents[T any](w http.ResponseWriter, r *http.Request, banner string, watch func() (<-chan T, func()),
	emit func(T) (name string, data any, send, last bool)) {
	fl, ok := w.(http.Flusher)
	if !ok {
		WriteProblem(w, r, http.StatusInternalServerError, "", "streaming unsupported")
		return
	}
	ch, stop := watch()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": %s\n\n", banner)
	fl.Flush()
	t := time.NewTicker(sseKeepalive)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case v, ok := <-ch:
			if !ok {
				return
			}
			name, data, send, last := emit(v)
			if !send {
				continue
			}
			b, _ := json.Marshal(data)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
			fl.Flush()
			if last {
				return
			}
		}
	}
}
