namespace Sluice;

/// <summary>
/// A hosted endpoint's message handler as a class, for handlers that come from configuration (the gateway's
/// <c>"handler": { "type": "MyCompany.ChatHandler, MyCompany" }</c>) or are shared between endpoints. What it
/// returns is sent back through the outbound chain, as for <c>OnMessage</c>.
/// </summary>
public interface IMessageHandler
{
    /// <summary>Handles one inbound message that got through the chain.</summary>
    ValueTask<object?> HandleAsync(MessageContext context);
}
