namespace Sluice;

/// <summary>
/// A step of a message pipeline: processes the message in <paramref name="context"/>. Interceptors receive
/// the rest of the chain as a <see cref="MessageDelegate"/> named <c>next</c>; calling it forwards the message.
/// </summary>
public delegate ValueTask MessageDelegate(MessageContext context);
