namespace Sluice;

/// <summary>
/// Configures a hosted WebSocket endpoint (<c>app.MapWebSocket</c>): everything a
/// <see cref="WebSocketPipelineBuilder"/> configures, plus the handler that receives each inbound message.
/// </summary>
public sealed class WebSocketEndpointBuilder : WebSocketPipelineBuilder
{
    internal WebSocketEndpointBuilder()
    {
    }

    internal Func<MessageContext, ValueTask<object?>>? Handler { get; private set; }

    internal List<Func<object, WebSocketMessage?>> ResultConverters { get; } = [];

    /// <summary>
    /// Handles each inbound message that got through the chain. What it returns is sent back to the client
    /// through the outbound chain: a <see cref="string"/> as text,
    /// bytes as binary, a <see cref="WebSocketMessage"/> as is, null as nothing, anything else as JSON.
    /// </summary>
    public WebSocketEndpointBuilder OnMessage(Func<WebSocketMessage, WebSocketConnection, object?> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SetHandler(context => new ValueTask<object?>(handler(context.Message, context.Connection)));
    }

    /// <summary>Handles each inbound message asynchronously; its result is sent back as for the synchronous form.</summary>
    public WebSocketEndpointBuilder OnMessage(Func<WebSocketMessage, WebSocketConnection, ValueTask<object?>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SetHandler(context => handler(context.Message, context.Connection));
    }

    /// <summary>Handles each inbound message, sending nothing back.</summary>
    public WebSocketEndpointBuilder OnMessage(Action<WebSocketMessage, WebSocketConnection> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SetHandler(context =>
        {
            handler(context.Message, context.Connection);
            return default;
        });
    }

    /// <summary>Handles each inbound message asynchronously, sending nothing back.</summary>
    public WebSocketEndpointBuilder OnMessage(Func<WebSocketMessage, WebSocketConnection, ValueTask> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SetHandler(context =>
        {
            var pending = handler(context.Message, context.Connection);
            return pending.IsCompletedSuccessfully ? default : AwaitNoResult(pending);
        });
    }

    /// <summary>Handles each inbound message with its whole <see cref="MessageContext"/>; the result is sent back.</summary>
    public WebSocketEndpointBuilder OnMessage(Func<MessageContext, ValueTask<object?>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SetHandler(handler);
    }

    /// <summary>Handles each inbound message with a handler class; its result is sent back.</summary>
    public WebSocketEndpointBuilder OnMessage(IMessageHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SetHandler(handler.HandleAsync);
    }

    /// <summary>
    /// Teaches the endpoint to turn a handler's result of type <typeparamref name="TResult"/> into a message,
    /// ahead of the built-in conversions and of converters registered for the whole app.
    /// </summary>
    public WebSocketEndpointBuilder AddResultConverter<TResult>(Func<TResult, WebSocketMessage> converter)
    {
        ArgumentNullException.ThrowIfNull(converter);
        ResultConverters.Add(value => value is TResult typed ? converter(typed) : null);
        return this;
    }

    private WebSocketEndpointBuilder SetHandler(Func<MessageContext, ValueTask<object?>> handler)
    {
        if (Handler is not null)
        {
            throw new InvalidOperationException("The endpoint already has a message handler; an endpoint has one.");
        }

        Handler = handler;
        return this;
    }

    private static async ValueTask<object?> AwaitNoResult(ValueTask pending)
    {
        await pending;
        return null;
    }
}
