using Sluice.Gateway.Configuration.Model;
using Sluice.Policies;

namespace Sluice.Gateway.Configuration;

/// <summary>A validated gateway configuration, ready to run: the file's model, with every policy and handler created.</summary>
internal sealed class GatewayConfig
{
    public required IReadOnlyList<string> Listen { get; init; }

    /// <summary>The file's <c>tls</c>, as written (the runtime watches its files).</summary>
    public TlsModel? Tls { get; init; }

    /// <summary>The certificate of the https:// listeners, loaded from <see cref="Tls"/>.</summary>
    public Tls.LoadedCertificate? Certificate { get; init; }

    public required LimitsModel Limits { get; init; }

    public required AdminModel Admin { get; init; }

    public BackplaneModel? Backplane { get; init; }

    /// <summary><c>forwarded.trustedProxies</c>, as networks; empty when the peer is the client.</summary>
    public IReadOnlyList<System.Net.IPNetwork> TrustedProxies { get; init; } = [];

    public required IReadOnlyList<RouteConfig> Routes { get; init; }

    public required IReadOnlyDictionary<string, PolicyInstance> Policies { get; init; }

    /// <summary>The folder of the file: relative paths (schemaFile, script files, plugins) start here.</summary>
    public required string BaseDirectory { get; init; }

    /// <summary>Values from <c>env:NAME</c>: pass any text about the configuration through <see cref="SecretValues.Conceal"/>.</summary>
    public SecretValues Secrets { get; init; } = new();
}

/// <summary>A route, ready to map: its model and, for a handler route, its handler.</summary>
internal sealed record RouteConfig
{
    public required int Index { get; init; }

    public required string Path { get; init; }

    public ProxyModel? Proxy { get; init; }

    public HandlerRouteConfig? Handler { get; init; }

    public required IReadOnlyList<string> Upgrade { get; init; }

    public required IReadOnlyList<string> Inbound { get; init; }

    public required IReadOnlyList<string> Outbound { get; init; }

    /// <summary>TLS options for a wss:// backend, from <c>proxy.tls</c>; null for the defaults (the system's trust store).</summary>
    public Func<Uri, System.Net.Security.SslClientAuthenticationOptions>? BackendTls { get; init; }

    /// <summary>permessage-deflate with clients (an addition to the contract).</summary>
    public bool Compression { get; init; }

    /// <summary>The route's lifecycle webhooks, if any.</summary>
    public EventsModel? Events { get; init; }

    /// <summary>The route's <c>stream</c>: large binary messages relayed fragment by fragment; null holds every message whole.</summary>
    public StreamModel? Stream { get; init; }
}

/// <param name="Type">The handler's type as the file names it (<c>echo</c>, or a plugin type name).</param>
/// <param name="Map">Sets up the route's messages.</param>
/// <param name="Options">A built-in handler's options record (<see cref="Model.PubSubHandlerOptions"/>...), or null.</param>
internal sealed record HandlerRouteConfig(string Type, Action<WebSocketEndpointBuilder> Map, object? Options = null);

/// <summary>A created policy, with what identifies its configuration so that a reload can keep it if unchanged.</summary>
internal sealed class PolicyInstance(string name, PolicyKind kind, object policy, PolicyCondition? when, string fingerprint)
{
    public string Name { get; } = name;

    public PolicyKind Kind { get; } = kind;

    /// <summary>An <see cref="IUpgradePolicy"/> or an <see cref="IMessageInterceptor"/>.</summary>
    public object Policy { get; } = policy;

    public PolicyCondition? When { get; } = when;

    public string Fingerprint { get; } = fingerprint;
}
