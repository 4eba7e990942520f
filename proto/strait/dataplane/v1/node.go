package dataplanev1

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Node is the dataplane API as a Go interface. The all-in-one binary calls a
// node in process through it; NewClient gives the same interface over gRPC to
// a remote node, and NewServer serves any Node over gRPC. Errors carry gRPC
// status codes (status.Code(err)) in both cases, so callers handle an
// in-process node and a remote one alike.
//
// Implementations are safe for concurrent use.
type Node interface {
	// NodeInfo describes the node.
	NodeInfo(ctx context.Context) (*NodeInfoResponse, error)
	// CreateSession allocates a session; see the Dataplane service.
	CreateSession(ctx context.Context, req *CreateSessionRequest) (*Session, error)
	// UpdateSession changes a running session.
	UpdateSession(ctx context.Context, req *UpdateSessionRequest) (*Session, error)
	// DeleteSession stops a session and returns its final state.
	DeleteSession(ctx context.Context, req *DeleteSessionRequest) (*Session, error)
	// GetSession returns one session.
	GetSession(ctx context.Context, id string) (*Session, error)
	// ListSessions returns every session.
	ListSessions(ctx context.Context) ([]*Session, error)
	// WatchEvents returns a channel of events (of one session, or all when
	// sessionID is empty). The channel is closed when ctx ends or the node
	// goes away; a reader that falls behind loses events, never blocks the node.
	WatchEvents(ctx context.Context, sessionID string) (<-chan *Event, error)
}

// watchBuffer is how many events a watcher may lag behind before the
// oldest undelivered ones are dropped.
const watchBuffer = 256

// NewClient returns a Node that calls a remote node over conn.
func NewClient(conn grpc.ClientConnInterface) Node {
	return &client{c: NewDataplaneClient(conn)}
}

type client struct{ c DataplaneClient }

func (c *client) NodeInfo(ctx context.Context) (*NodeInfoResponse, error) {
	return c.c.NodeInfo(ctx, &NodeInfoRequest{})
}

func (c *client) CreateSession(ctx context.Context, req *CreateSessionRequest) (*Session, error) {
	return c.c.CreateSession(ctx, req)
}

func (c *client) UpdateSession(ctx context.Context, req *UpdateSessionRequest) (*Session, error) {
	return c.c.UpdateSession(ctx, req)
}

func (c *client) DeleteSession(ctx context.Context, req *DeleteSessionRequest) (*Session, error) {
	r, err := c.c.DeleteSession(ctx, req)
	if err != nil {
		return nil, err
	}
	return r.GetSession(), nil
}

func (c *client) GetSession(ctx context.Context, id string) (*Session, error) {
	return c.c.GetSession(ctx, &GetSessionRequest{Id: id})
}

func (c *client) ListSessions(ctx context.Context) ([]*Session, error) {
	r, err := c.c.ListSessions(ctx, &ListSessionsRequest{})
	if err != nil {
		return nil, err
	}
	return r.GetSessions(), nil
}

func (c *client) WatchEvents(ctx context.Context, sessionID string) (<-chan *Event, error) {
	stream, err := c.c.WatchEvents(ctx, &WatchEventsRequest{SessionId: sessionID})
	if err != nil {
		return nil, err
	}
	ch := make(chan *Event, watchBuffer)
	go func() {
		defer close(ch)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return // io.EOF, cancellation or a broken connection: the caller re-watches.
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// NewServer returns a gRPC DataplaneServer that serves n.
func NewServer(n Node) DataplaneServer {
	return &server{n: n}
}

type server struct {
	UnimplementedDataplaneServer
	n Node
}

func (s *server) NodeInfo(ctx context.Context, _ *NodeInfoRequest) (*NodeInfoResponse, error) {
	return s.n.NodeInfo(ctx)
}

func (s *server) CreateSession(ctx context.Context, req *CreateSessionRequest) (*Session, error) {
	return s.n.CreateSession(ctx, req)
}

func (s *server) UpdateSession(ctx context.Context, req *UpdateSessionRequest) (*Session, error) {
	return s.n.UpdateSession(ctx, req)
}

func (s *server) DeleteSession(ctx context.Context, req *DeleteSessionRequest) (*DeleteSessionResponse, error) {
	sess, err := s.n.DeleteSession(ctx, req)
	if err != nil {
		return nil, err
	}
	return &DeleteSessionResponse{Session: sess}, nil
}

func (s *server) GetSession(ctx context.Context, req *GetSessionRequest) (*Session, error) {
	return s.n.GetSession(ctx, req.GetId())
}

func (s *server) ListSessions(ctx context.Context, _ *ListSessionsRequest) (*ListSessionsResponse, error) {
	ss, err := s.n.ListSessions(ctx)
	if err != nil {
		return nil, err
	}
	return &ListSessionsResponse{Sessions: ss}, nil
}

func (s *server) WatchEvents(req *WatchEventsRequest, stream grpc.ServerStreamingServer[Event]) error {
	ctx := stream.Context()
	ch, err := s.n.WatchEvents(ctx, req.GetSessionId())
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return status.Error(codes.Unavailable, "node stopped")
			}
			if err := stream.Send(ev); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
}
