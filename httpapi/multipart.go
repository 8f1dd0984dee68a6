package httpapi

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

func multipartReader(r *http.Request, params map[string]string) (*multipart.Reader, error) {
	if params["boundary"] == "" {
		return nil, idflow.Errorf(idflow.EINVALID, "multipart body without boundary")
	}
	return multipart.NewReader(r.Body, params["boundary"]), nil
}

// readIngestForm reads the `file` part and an optional `app_id` field,
// streaming (the body limit of the route bounds the total).
func readIngestForm(mr *multipart.Reader) (service.IngestInput, error) {
	var in service.IngestInput
	gotFile := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return in, err
			}
			return in, idflow.WrapError(idflow.EINVALID, "malformed multipart body", err)
		}
		switch part.FormName() {
		case "file":
			if gotFile {
				return in, idflow.Errorf(idflow.EINVALID, "send one file per request")
			}
			b, err := io.ReadAll(part)
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return in, err
				}
				return in, idflow.WrapError(idflow.EINVALID, "malformed multipart body", err)
			}
			in.Filename, in.ContentType, in.Content = part.FileName(), part.Header.Get("Content-Type"), b
			gotFile = true
		case "app_id":
			b, err := io.ReadAll(io.LimitReader(part, 128))
			if err != nil {
				return in, idflow.WrapError(idflow.EINVALID, "malformed multipart body", err)
			}
			in.AppID = string(b)
		default:
			return in, idflow.Errorf(idflow.EINVALID, "unknown form field %q", part.FormName())
		}
	}
	if !gotFile {
		return in, idflow.Errorf(idflow.EINVALID, "a `file` part is required")
	}
	return in, nil
}
