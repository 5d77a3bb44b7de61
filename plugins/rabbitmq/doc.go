// Package rabbitmq is the RabbitMQ backend: it issues short-lived users with
// the vhost and topic permissions a credbroker role names, through the
// management HTTP API (with rabbit-hole), and removes them again.
//
// [Driver] and [Plugin] implement plugin contract v2 in the package's own
// types ([Connection], [Role]); [New] returns the driver the broker lists,
// and the broker opens it through [plugins.Open], whose decorator redacts the
// admin's password ([Plugin.Secrets]) and the issued one from every error.
//
// # Configuration
//
// A backend's connection section names the management API, its admin user
// (tagged administrator) with the password by reference, never inline, and
// the AMQP address issued credentials point at:
//
//	connection:
//	  management_url: https://mq.internal:15671   # http:// or https://, no credentials
//	  username: credbroker-admin
//	  password: env:RABBITMQ_ADMIN_PASSWORD       # or file:/path
//	  amqp_url: amqps://mq.internal:5671          # no credentials, no vhost
//	  tls:                                        # optional, for https management
//	    ca_file: /etc/credbroker/rabbitmq-ca.pem
//	    server_name: mq.internal
//
// A role's `rabbitmq:` section gives, for each vhost, the configure, write
// and read regular expressions of RabbitMQ's permissions (all three
// required; "" allows nothing), optional topic permissions on topic
// exchanges, and optional user tags:
//
//	rabbitmq:
//	  vhosts:
//	    orders: {configure: '^orders\.', write: '^orders\.', read: '^orders\.'}
//	  topic_permissions:
//	    - {vhost: orders, exchange: orders.events, write: '^orders\.created\.', read: '.*'}
//	  tags: [management]
//
// Regular expressions are compiled with Go's regexp package as a sanity
// check; RabbitMQ evaluates them with Erlang's PCRE, so PCRE-only syntax
// (lookarounds, backreferences) is refused here. RabbitMQ matches them
// anywhere in a name, so ParseRole warns about read and write regexps not
// anchored with ^. A configure regexp that can match any name starting with
// "amq." (RabbitMQ's own exchanges, amq.rabbitmq.trace, the server-named
// amq.gen-… queues) is refused: ParseRole decides it from the compiled
// pattern, for every such name and every position, so 'orders\.' (which
// matches amq.orders.x) is refused and '^orders\.' is not.
//
// The tags administrator, impersonator, monitoring and policymaker are
// refused: administrator gives full control of the node, impersonator lets
// a user forge the user_id of the messages it publishes, monitoring shows
// every vhost's connections and queues, other users' included, and
// policymaker lets the user set policies and parameters that outlive its
// lease. management is allowed.
//
// A management_url in plain http:// to a host off loopback is a warning at
// start ([Plugin.Warnings]): the admin's password crosses the network in
// every request.
//
// # What happens on the server
//
// Create looks the username up and refuses one that exists (PUT would
// replace it), then PUTs the user with a salted SHA-256 password hash
// (rabbit_password_hashing_sha256) computed in the broker, so the plaintext
// never travels to the server, tagged with the role's tags and credbroker —
// the marker ListManaged lists by. It then sets the permissions in each of
// the role's vhosts and the topic permissions. If any step fails, Create
// deletes the user before returning the error.
//
// The issued URI is amqp[s]://user:password@host:port/vhost for the role's
// first vhost in sorted order, with the environment variables AMQP_URL,
// RABBITMQ_USERNAME, RABBITMQ_PASSWORD and RABBITMQ_VHOST.
//
// RabbitMQ has no user expiry: Renew only checks the user still exists, and
// the broker's reaper is the only thing that ends a lease. Revoke deletes
// the user, then closes every connection it still has; it refuses a user
// without the credbroker tag. Revoke needs nothing but the username, so
// Create returns no State: a lease whose role was removed from the config, a
// lease written before contract v2 and an orphan the sweep finds all revoke
// the same way, and nothing needs upgrading.
//
// Usernames are limited to 64 bytes ([Driver.UsernameLimit]).
//
// # credbroker connect and dev
//
// [Driver.Describe] declares no client for `credbroker connect` but the
// user's shell, opened with AMQP_URL and the other variables set (no
// RabbitMQ tool logs in from the credential's variables; programs run with
// `credbroker exec` read AMQP_URL), and the demo backend of `credbroker
// dev`: the node whose management API is at
// $CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL (default
// http://guest:guest@127.0.0.1:15672, the user tagged administrator) and
// AMQP at $CREDBROKER_DEV_RABBITMQ_AMQP_URL (default amqp://127.0.0.1:5672).
// Preparing it creates the vhost credbroker-demo; the demo role may
// configure, write and read the demo.* queues and exchanges there.
package rabbitmq
