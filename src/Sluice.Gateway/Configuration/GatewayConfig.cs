using Sluice.Policies;

namespace Sluice.Gateway.Configuration;

/// <summary>A validated gateway configuration: the file, with every reference resolved and every policy created.</summary>
internal sealed class GatewayConfig
{
    public required IReadOnlyList<string> Listen { get; init; }

    public required LimitsConfig Limits { get; init; }

    public required AdminConfig Admin { get; init; }

    public BackplaneConfig? Backplane { get; init; }

    public required IReadOnlyList<RouteConfig> Routes { get; init; }

    public required IReadOnlyDictionary<string, PolicyInstance> Policies { get; init; }

    /// <summary>The folder of the file: relative paths (schemaFile, script files, plugins) start here.</summary>
    public required string BaseDirectory { get; init; }

    /// <summary>Values from <c>env:NAME</c>: pass any text about the configuration through <see cref="SecretValues.Conceal"/>.</summary>
    public SecretValues Secrets { get; init; } = new();
}

internal sealed record LimitsConfig
{
    public int MaxMessageBytes { get; init; } = 1024 * 1024;

    public double IdleTimeoutSeconds { get; init; } = 300;

    public double KeepAliveSeconds { get; init; } = 30;

    public int? MaxConnections { get; init; }

    public double DrainSeconds { get; init; } = 10;

    public double CloseTimeoutSeconds { get; init; } = 5;
}

internal sealed record AdminConfig
{
    public string Path { get; init; } = "/_sluice";

    /// <summary>The resolved key (never logged), or null: then admin paths answer loopback clients only.</summary>
    public string? ApiKey { get; init; }
}

internal sealed record BackplaneConfig(string Type, string Connection, string ChannelPrefix);

internal sealed record RouteConfig
{
    public required int Index { get; init; }

    public required string Path { get; init; }

    public ProxyRouteConfig? Proxy { get; init; }

    public HandlerRouteConfig? Handler { get; init; }

    public required IReadOnlyList<string> Upgrade { get; init; }

    public required IReadOnlyList<string> Inbound { get; init; }

    public required IReadOnlyList<string> Outbound { get; init; }

    /// <summary>permessage-deflate with clients (an addition to the contract).</summary>
    public bool Compression { get; init; }
}

internal sealed record ProxyRouteConfig(string Target, IReadOnlyList<string> ForwardHeaders, int ConnectTimeoutMs, bool Compression);

/// <param name="MaxSubscriptions">The pubsub handler's <c>maxSubscriptions</c>, or null for the default.</param>
internal sealed record HandlerRouteConfig(string Type, object? Handler, int? MaxSubscriptions = null);

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
