using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Sluice.Gateway.Configuration.Model;

// The gateway file as data (docs/gateway-contract.md): what ModelReader reads, what the validators check, what the
// JSON Schema is generated from. Each property is a key: its JSON name is the camel-case property name; [Description]
// goes into the schema; [Required], [Range] and [MinLength] are checked by the reader and go into the schema too.
// Nothing here is resolved yet: policy options stay JSON until their type is known.

/// <summary>A gateway configuration file.</summary>
[Description("A Sluice gateway configuration: where to listen, limits, the admin endpoints, an optional backplane, routes and named policies.")]
internal sealed record GatewayFile
{
    [JsonPropertyName("$schema")]
    [Description("The JSON Schema of this file, for editors; ignored by the gateway.")]
    public string? Schema { get; init; }

    [SingleOrList]
    [Description("Addresses to listen on, http:// or https:// (https needs tls). A string or a list. Read at start; --urls wins. Default http://127.0.0.1:5080.")]
    public IReadOnlyList<string> Listen { get; init; } = [];

    [Description("The certificate of the https:// listeners: PEM files, reloaded when they change.")]
    public TlsModel? Tls { get; init; }

    [Description("Limits that apply to every route.")]
    public LimitsModel? Limits { get; init; }

    [Description("The dashboard, metrics and admin API.")]
    public AdminModel? Admin { get; init; }

    [Description("Shares pub/sub topics between gateway nodes. Read at start.")]
    public BackplaneModel? Backplane { get; init; }

    [Description("Proxies in front of the gateway whose X-Forwarded-For and X-Forwarded-Proto are believed.")]
    public ForwardedModel? Forwarded { get; init; }

    [Required(ErrorMessage = "is required: list at least one route")]
    [MinLength(1, ErrorMessage = "list at least one route")]
    [Description("The WebSocket routes: each proxies to a backend or runs a built-in or plugin handler.")]
    public IReadOnlyList<RouteModel?>? Routes { get; init; }

    [Description("Named policies that routes list under upgrade, inbound or outbound.")]
    public IReadOnlyDictionary<string, PolicyModel> Policies { get; init; } = new Dictionary<string, PolicyModel>();
}

/// <summary>The file's <c>limits</c>.</summary>
internal sealed record LimitsModel
{
    [Range(1, int.MaxValue)]
    [Description("The largest message, in bytes, after reassembly of fragments; a larger one closes the connection with 1009. Default 1048576.")]
    public int MaxMessageBytes { get; init; } = 1024 * 1024;

    [Range(0, 31_536_000)]
    [Description("Close a connection that has received nothing for this long (seconds); 0 turns it off. Default 300.")]
    public double IdleTimeoutSeconds { get; init; } = 300;

    [Range(0, 86_400)]
    [Description("Send a ping after this many seconds without traffic; 0 turns it off. Default 30.")]
    public double KeepAliveSeconds { get; init; } = 30;

    [Range(1, int.MaxValue)]
    [Description("The most WebSocket connections at once; more are answered 503. Default: from the open-file limit. Read at start.")]
    public int? MaxConnections { get; init; }

    [Range(1, int.MaxValue)]
    [Description("The most WebSocket connections open at once per client address (per /64 network for IPv6); more are answered 429 with Retry-After. Default: no limit. Read at start.")]
    public int? MaxConnectionsPerIp { get; init; }

    [Range(0, 3600)]
    [Description("On shutdown, how long open connections get to close (seconds). Default 10. Read at start.")]
    public double DrainSeconds { get; init; } = 10;

    [Range(0.1, 3600)]
    [Description("How long to wait for the peer's close frame after sending one (seconds). Default 5.")]
    public double CloseTimeoutSeconds { get; init; } = 5;
}

/// <summary>The file's <c>admin</c>.</summary>
internal sealed record AdminModel
{
    [Description("Where the dashboard, /metrics and the admin API live: starts with '/', does not end with one, no route parameters. Default /_sluice. Read at start.")]
    public string Path { get; init; } = "/_sluice";

    [Description("The key admin requests must send (at least 16 characters; use env:NAME). Without one, admin paths answer loopback clients only.")]
    public string? ApiKey { get; init; }
}

/// <summary>The file's <c>backplane</c>.</summary>
internal sealed record BackplaneModel
{
    [Required]
    [Description("The backplane: redis.")]
    public string Type { get; init; } = string.Empty;

    [Required]
    [Description("The StackExchange.Redis connection string (use env:NAME for one with a password).")]
    public string Connection { get; init; } = string.Empty;

    [Description("The prefix of the Redis channels. Default sluice.")]
    public string ChannelPrefix { get; init; } = "sluice";

    [Description("This node's id in the cluster (letters, digits, '.', '_', '-'; at most 64; env:NAME allowed). Default: the host's name and six random hex digits, new at each start.")]
    public string? NodeId { get; init; }
}

/// <summary>One of the file's <c>routes</c>.</summary>
internal sealed record RouteModel
{
    [Required]
    [Description("The route template clients connect to (/chat/{room}); starts with '/'; unique.")]
    public string Path { get; init; } = string.Empty;

    [Description("Forward connections to a backend WebSocket server. Give proxy or handler, not both.")]
    public ProxyModel? Proxy { get; init; }

    [Description("Handle connections in the gateway. Give proxy or handler, not both.")]
    public HandlerModel? Handler { get; init; }

    [Description("Upgrade policies (by name), run once on the upgrade request, in order.")]
    public IReadOnlyList<string> Upgrade { get; init; } = [];

    [Description("Message policies (by name) for client-to-server messages, in order.")]
    public IReadOnlyList<string> Inbound { get; init; } = [];

    [Description("Message policies (by name) for server-to-client messages, in order.")]
    public IReadOnlyList<string> Outbound { get; init; } = [];

    [Description("Negotiate permessage-deflate with clients. Default false.")]
    public bool Compression { get; init; }

    [Description("Lifecycle webhooks: POST each connect and disconnect of this route to an HTTP service, at least once, in the background.")]
    public EventsModel? Events { get; init; }

    [Description("Proxy routes: stream large binary messages fragment by fragment instead of holding them whole; json-* and script policies skip them (counted), size-limit and rate-limit still apply.")]
    public StreamModel? Stream { get; init; }
}

/// <summary>A route's <c>events</c> (docs/integrations.md).</summary>
internal sealed record EventsModel
{
    [Required]
    [Description("The URL (http:// or https://) events are POSTed to as JSON.")]
    public string Url { get; init; } = string.Empty;

    [Description("The events to send: connect, disconnect. Default both.")]
    public IReadOnlyList<string> On { get; init; } = ["connect", "disconnect"];

    [Range(1, 600_000)]
    [Description("How long one delivery attempt may take (milliseconds). Failed attempts are retried with backoff for up to a minute. Default 2000.")]
    public int TimeoutMs { get; init; } = 2000;

    [Range(1, 1_000_000)]
    [Description("How many events wait for delivery at most; beyond it new events are dropped, counted and logged. Default 10000.")]
    public int QueueSize { get; init; } = 10_000;
}

/// <summary>A route's <c>stream</c>.</summary>
internal sealed record StreamModel
{
    [Range(1, 1024 * 1024 * 1024)]
    [Description("A binary message longer than this (bytes) is relayed fragment by fragment as it arrives; at most limits.maxMessageBytes. Default 1048576.")]
    public int AboveBytes { get; init; } = 1024 * 1024;

    [Range(1, int.MaxValue)]
    [Description("The largest streamed message (bytes), at least aboveBytes; a larger one closes the connection with 1009. Replaces limits.maxMessageBytes for binary messages on this route. Default 1073741824.")]
    public int MaxBytes { get; init; } = 1024 * 1024 * 1024;
}

/// <summary>A route's <c>proxy</c>.</summary>
internal sealed record ProxyModel
{
    [Description("The backend URL (ws:// or wss://); ${params.NAME}, ${query.NAME}, ${headers.NAME}, ${subject}, ${claims.NAME}, ${connection.id} and ${env.NAME} place values of the upgrade, URL-encoded, in its path or query. Give target or targets, not both.")]
    public string? Target { get; init; }

    [MinLength(1, ErrorMessage = "list at least one target")]
    [Description("Several backend URLs, each like target; a new connection goes to a healthy one chosen by loadBalancing, the next healthy ones if connecting fails. Give target or targets, not both.")]
    public IReadOnlyList<string>? Targets { get; init; }

    [AllowedValues("round-robin", "least-connections", "random", "hash")]
    [Description("How targets share new connections: round-robin (default), least-connections, random, or hash (by hashBy).")]
    public string LoadBalancing { get; init; } = "round-robin";

    [Description("For loadBalancing hash: a rewrite expression (${subject}, ${headers.NAME}, ...) whose value picks the target; the same value goes to the same target while it is healthy.")]
    public string? HashBy { get; init; }

    [Description("Active health checks of the targets; without it, only failed connects (passive health) mark a target unhealthy.")]
    public HealthCheckModel? HealthCheck { get; init; }

    [Description("Request headers copied to the backend's handshake (not the handshake's own headers, nor X-Forwarded-*).")]
    public IReadOnlyList<string> ForwardHeaders { get; init; } = [];

    [Range(1, 600_000)]
    [Description("How long the backend may take to accept (milliseconds); then the client gets 502. Default 5000.")]
    public int ConnectTimeoutMs { get; init; } = 5000;

    [Description("Negotiate permessage-deflate with the backend. Default false.")]
    public bool Compression { get; init; }

    [Description("TLS for wss:// backends: a CA bundle to trust instead of the system's, and a client certificate for mutual TLS.")]
    public ProxyTlsModel? Tls { get; init; }
}

/// <summary>The file's <c>tls</c>: the certificate of the gateway's https:// listeners.</summary>
internal sealed record TlsModel
{
    [Required]
    [Description("The certificate, a PEM file (relative to this file's folder); certificates after the first are sent as its chain.")]
    public string Certificate { get; init; } = string.Empty;

    [Required]
    [Description("The certificate's private key, a PEM file (relative to this file's folder), unencrypted; or env:NAME holding the PEM text or a path.")]
    public string Key { get; init; } = string.Empty;
}

/// <summary>A route's <c>proxy.tls</c>: how the gateway connects to a wss:// backend.</summary>
internal sealed record ProxyTlsModel
{
    [Description("A PEM bundle of CA certificates: the backend's certificate must chain to one of them (the system's store is then not used).")]
    public string? Ca { get; init; }

    [Description("A client certificate (PEM) the gateway presents to the backend (mutual TLS); needs clientKey.")]
    public string? ClientCertificate { get; init; }

    [Description("The client certificate's private key (PEM, unencrypted); or env:NAME holding the PEM text or a path.")]
    public string? ClientKey { get; init; }
}

/// <summary>A proxy's <c>healthCheck</c>.</summary>
internal sealed record HealthCheckModel
{
    [Range(0.1, 86_400)]
    [Description("Seconds between two checks of a target. Default 10.")]
    public double IntervalSeconds { get; init; } = 10;

    [Range(1, 600_000)]
    [Description("How long a check may take (milliseconds) before it counts as failed. Default 2000.")]
    public int TimeoutMs { get; init; } = 2000;

    [Range(1, 1000)]
    [Description("Consecutive failures (checks or connects) after which a target is unhealthy. Default 2.")]
    public int UnhealthyAfter { get; init; } = 2;

    [Range(1, 1000)]
    [Description("Consecutive successful checks after which an unhealthy target gets connections again. Default 1.")]
    public int HealthyAfter { get; init; } = 1;

    [Description("An HTTP GET of this path on the target's host and port (2xx is healthy); without it, a WebSocket handshake to the target.")]
    public string? Path { get; init; }
}

/// <summary>A route's <c>handler</c>.</summary>
internal sealed record HandlerModel
{
    [Required]
    [Description("A built-in handler (echo, pubsub, http) or a plugin type 'Namespace.Type, Assembly'.")]
    public string Type { get; init; } = string.Empty;

    [Description("The handler's options: pubsub takes maxSubscriptions, namespace, permissions, history and presence; echo and http none; a plugin's bind to its options class.")]
    public JsonNode? Options { get; init; }

    [Description("The http handler only: the URL (http:// or https://) each message is POSTed to.")]
    public string? Url { get; init; }

    [Range(1, 600_000)]
    [Description("The http handler only: how long the service may take per message (milliseconds) before the client gets an error frame. Default 5000.")]
    public int? TimeoutMs { get; init; }

    [Range(1, 100_000)]
    [Description("The http handler only: how many requests of this route may be in flight at once, across connections. Default 64.")]
    public int? MaxConcurrentRequests { get; init; }
}

/// <summary>One of the file's <c>policies</c>.</summary>
internal sealed record PolicyModel
{
    [Required]
    [Description("A built-in policy type (docs/policies.md) or a plugin type 'Namespace.Type, Assembly'.")]
    public string Type { get; init; } = string.Empty;

    [Description("The policy type's options (docs/policies.md).")]
    public JsonNode? Options { get; init; }

    [Description("Run this message policy only on messages that match: { \"path\": \"/action\", \"in\": [...] }, { \"opcode\": \"text\" } ...")]
    public JsonNode? When { get; init; }
}

/// <summary>The options of the built-in <c>pubsub</c> handler.</summary>
internal sealed record PubSubHandlerOptions
{
    [Range(1, 1_000_000)]
    [Description("The most topics one connection may subscribe to; a subscribe beyond it is answered with status 429. Default 100.")]
    public int? MaxSubscriptions { get; init; }

    [Description("The route's topic namespace: its topics are separate from other routes' topics of the same name. Default none (shared).")]
    public string? Namespace { get; init; }

    [Description("Who may subscribe and publish: the first entry whose topics glob matches decides; none matches, denied. Default: every topic open.")]
    public IReadOnlyList<PubSubPermissionModel>? Permissions { get; init; }

    [Description("Keep each topic's latest messages, with offsets and an epoch, for clients that reconnect with since.")]
    public PubSubHistoryModel? History { get; init; }

    [Description("Answer {\"op\":\"presence\"} with the topic's subscribers on every node; joinLeave adds join and leave events.")]
    public PubSubPresenceModel? Presence { get; init; }
}

/// <summary>One entry of the pubsub handler's <c>permissions</c>.</summary>
internal sealed record PubSubPermissionModel
{
    [Required]
    [Description("A topic glob: * matches any characters, ${subject} the connection's subject.")]
    public string Topics { get; init; } = string.Empty;

    [Description("Who may subscribe (and ask for presence): *, authenticated, subject:NAME, claim:NAME=VALUE. Default nobody.")]
    public IReadOnlyList<string> Subscribe { get; init; } = [];

    [Description("Who may publish: *, authenticated, subject:NAME, claim:NAME=VALUE. Default nobody.")]
    public IReadOnlyList<string> Publish { get; init; } = [];
}

/// <summary>The pubsub handler's <c>history</c>.</summary>
internal sealed record PubSubHistoryModel
{
    [Range(1, TopicHistoryOptions.MaxSize)]
    [Description("How many of each topic's latest messages are kept (at most 100000). Default 100.")]
    public int Size { get; init; } = 100;

    [Range(1, 604_800)]
    [Description("How long a message is kept, in seconds (at most a week). Default 600.")]
    public int TtlSeconds { get; init; } = 600;
}

/// <summary>The pubsub handler's <c>presence</c>.</summary>
internal sealed record PubSubPresenceModel
{
    [Description("Subscribers receive {\"op\":\"join\"|\"leave\",\"topic\":T,\"subject\":S} as others come and go. Default false.")]
    public bool JoinLeave { get; init; }
}

/// <summary>A key whose value may be one string instead of a list of strings.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class SingleOrListAttribute : Attribute;

/// <summary>The file's <c>forwarded</c>.</summary>
internal sealed record ForwardedModel
{
    [Description("IP addresses and CIDR ranges (10.0.0.0/8, 2001:db8::/32) of the proxies in front of the gateway. When the peer is one of them, the client's address is taken from X-Forwarded-For (walking back through the trusted proxies it lists) and its scheme from X-Forwarded-Proto. Without it the peer is the client.")]
    public IReadOnlyList<string> TrustedProxies { get; init; } = [];
}
