namespace Sluice;

/// <summary>
/// Gives code anywhere below an interceptor (a service, a repository, a logger enricher) the message that is
/// being processed, across awaits, without passing it down.
/// </summary>
/// <remarks>
/// The value is meant for code running as part of a message's pipeline. Work that outlives the pipeline
/// (a fire-and-forget task, for example) must copy what it needs first: the context is reused for the next
/// message of the same connection.
/// </remarks>
public interface IMessageContextAccessor
{
    /// <summary>Gets the message context of the pipeline that is running, or null outside one.</summary>
    MessageContext? MessageContext { get; }
}

internal sealed class MessageContextAccessor : IMessageContextAccessor
{
    public MessageContext? MessageContext => MessageContextScope.Current;
}

/// <summary>
/// The ambient message context. Each receive loop sets the <see cref="AsyncLocal{T}"/> once to a holder it
/// owns and then only changes the holder's field per message, so the per-message cost is one store rather than
/// an execution-context copy (the same trick as ASP.NET Core's HttpContextAccessor).
/// </summary>
internal static class MessageContextScope
{
    private static readonly AsyncLocal<Holder?> s_current = new();

    public static MessageContext? Current => s_current.Value?.Context;

    /// <summary>Installs a holder for the calling flow; done once per receive loop.</summary>
    public static Holder Enter()
    {
        var holder = new Holder();
        s_current.Value = holder;
        return holder;
    }

    /// <summary>Gets the calling flow's holder, if a receive loop of this flow installed one.</summary>
    public static Holder? CurrentHolder => s_current.Value;

    /// <summary>Runs code for a context on a flow with no holder (an app thread sending): installs a fresh one.</summary>
    public static Holder EnterTransient(MessageContext context)
    {
        var holder = new Holder { Context = context };
        s_current.Value = holder;
        return holder;
    }

    public static void Exit() => s_current.Value = null;

    internal sealed class Holder
    {
        public MessageContext? Context;
    }
}
