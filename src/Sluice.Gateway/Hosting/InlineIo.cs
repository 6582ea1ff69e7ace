namespace Sluice.Gateway.Hosting;

/// <summary>
/// Whether the gateway runs socket completions and Kestrel's pipe continuations on the socket's I/O thread instead of
/// handing each to the thread pool. It is the gateway's default: a proxied message then crosses the process on the
/// thread that read it, without a thread-pool hop and the wake-up it costs per read, which was the largest single
/// item of the profile (docs/architecture.md, "Where the gateway's code runs"). Setting
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0</c> turns both off.
/// </summary>
internal static class InlineIo
{
    // Read by System.Net.Sockets once, when its first socket engine starts: it has no other switch.
    private const string RuntimeVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Whether inline I/O is on; decided by <see cref="Configure"/>.</summary>
    public static bool Enabled { get; private set; }

    /// <summary>
    /// Turns inline socket completions on unless the environment says otherwise. Must run before the process opens
    /// its first socket.
    /// </summary>
    public static void Configure()
    {
        var value = Environment.GetEnvironmentVariable(RuntimeVariable);
        if (string.IsNullOrEmpty(value))
        {
            Environment.SetEnvironmentVariable(RuntimeVariable, "1");
            value = "1";
        }

        Enabled = value == "1";
    }
}
