package sdk

// The parts of the plugin protocol that are not in the protobuf service: how
// the broker starts a program. plugins/external, the broker's side, uses the
// same constants.
const (
	// ProtocolEnv is the variable the broker sets in a program's environment
	// to [ProtocolCookie]. A program that does not find it was not started
	// by the broker and refuses to run.
	ProtocolEnv = "CREDBROKER_PLUGIN_PROTOCOL"
	// ProtocolCookie is the value of [ProtocolEnv]: the name of the service
	// the broker expects.
	ProtocolCookie = "credbroker.plugin.v1.PluginService"
	// SocketEnv is the variable that holds the path of the unix socket the
	// program serves on (already listening as [ListenerFD]). A program whose
	// gRPC library cannot serve on an inherited listener may close the
	// descriptor, remove the socket file and listen on the path itself: the
	// directory is private to the broker's user.
	SocketEnv = "CREDBROKER_PLUGIN_SOCKET"
	// ListenerFD is the file descriptor of the listening socket.
	ListenerFD = 3
	// ProtocolVersion is the version of the protocol this package speaks.
	// Handshake offers the versions the broker speaks and the program picks
	// one.
	ProtocolVersion = 1
)

// MinUsernameLimit is the smallest username limit a program may declare:
// room for the "cb_" prefix, the random suffix and a few characters of the
// role's name.
const MinUsernameLimit = 16
