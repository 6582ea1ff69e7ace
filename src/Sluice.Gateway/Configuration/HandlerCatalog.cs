using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Configuration;

/// <summary>
/// A handler the gateway has built in, by its <c>handler.type</c> name: its options record (read and checked like the
/// rest of the file, and described in the JSON Schema), and how it sets up a route.
/// </summary>
internal sealed class HandlerType
{
    private readonly Action<WebSocketEndpointBuilder, object?> _map;

    private HandlerType(string name, Type? optionsType, Action<WebSocketEndpointBuilder, object?> map)
    {
        Name = name;
        OptionsType = optionsType;
        _map = map;
    }

    public string Name { get; }

    /// <summary>The record its <c>options</c> are read into, or null if it takes none.</summary>
    public Type? OptionsType { get; }

    public static HandlerType Create(string name, Action<WebSocketEndpointBuilder> map) => new(name, null, (builder, _) => map(builder));

    public static HandlerType Create<TOptions>(string name, Action<WebSocketEndpointBuilder, TOptions> map)
        where TOptions : class, new() =>
        new(name, typeof(TOptions), (builder, options) => map(builder, (TOptions?)options ?? new TOptions()));

    /// <summary>Sets up a route's messages: <paramref name="options"/> is an <see cref="OptionsType"/>, or null for its defaults.</summary>
    public void Map(WebSocketEndpointBuilder builder, object? options) => _map(builder, options);
}

/// <summary>The built-in handlers (docs/gateway-contract.md, "Built-in handlers"). Adding one is one entry here.</summary>
internal static class BuiltInHandlers
{
    public static IReadOnlyDictionary<string, HandlerType> All { get; } = new Dictionary<string, HandlerType>(StringComparer.Ordinal)
    {
        ["echo"] = HandlerType.Create("echo", ws => ws.OnMessage((message, _) => message)),
        ["pubsub"] = HandlerType.Create<PubSubHandlerOptions>("pubsub", (ws, o) => ws.UsePubSubProtocol(PubSubPermissions.ToProtocolOptions(o))),
    };
}
