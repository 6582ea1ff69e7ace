namespace Sluice;

/// <summary>
/// The control frames an interceptor asks to see, besides data messages
/// (<see cref="InterceptorRegistration.WithControlFrames"/>). Interceptors that ask for none, the default, never see one.
/// </summary>
[Flags]
public enum ControlFrames
{
    /// <summary>Data messages only.</summary>
    None = 0,

    /// <summary>Pings: drop one and Sluice does not answer it; reply to answer it yourself.</summary>
    Ping = 1,

    /// <summary>Pongs: observed only. Keep-alive reads a leg's liveness before any interceptor runs, so it cannot be fooled.</summary>
    Pong = 2,

    /// <summary>
    /// Close frames: replace the message with <see cref="WebSocketMessage.FromClose"/> to change the code and reason
    /// sent on. A close cannot be dropped: the handshake is always completed.
    /// </summary>
    Close = 4,

    /// <summary>Pings, pongs and closes.</summary>
    All = Ping | Pong | Close,
}
