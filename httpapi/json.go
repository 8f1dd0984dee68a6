package httpapi

import (
	"encoding/json"
	"net/http"
)

func writeJSON(w http.ResponseWriter, status int, v any) error {
	vals := [...]string{"application/json", "no-store"} // one allocation for both
	h := w.Header()
	h["Content-Type"] = vals[0:1:1]
	h["Cache-Control"] = vals[1:2:2]
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// writeJSONNoStore writes v with whatever caching headers are already set.
func writeJSONNoStore(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
