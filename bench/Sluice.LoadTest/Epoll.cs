using System.Runtime.InteropServices;

namespace Sluice.LoadTest;

/// <summary>
/// Linux epoll, level-triggered, for the load side (the echo load, the raw echo backend, the fan-out clients): one
/// thread waits on every socket and reads only those with data. .NET's own socket engine costs the load side a thread-pool work item and an async state
/// machine per message; on one core that capped every server at the clients' ~67,000 deliveries/s.
/// </summary>
internal sealed partial class Epoll : IDisposable
{
    private const int EpollCtlAdd = 1;
    private const uint EpollIn = 0x001;

    // struct epoll_event is 12 bytes on x86 and x86-64 (events, then data at 4: packed, or 4-byte aligned) and
    // naturally aligned elsewhere (16).
    private static readonly int Stride = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86 ? 12 : 16;
    private static readonly int DataOffset = Stride - 8;

    private readonly int _fd;
    private readonly byte[] _events;

    public Epoll(int capacity)
    {
        _fd = EpollCreate1(0);
        if (_fd < 0)
        {
            throw new InvalidOperationException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
        }

        _events = new byte[capacity * Stride];
    }

    /// <summary>Watches <paramref name="fd"/> for input; <see cref="Wait"/> reports it as <paramref name="token"/>.</summary>
    public unsafe void Add(nint fd, int token)
    {
        var ev = stackalloc byte[16];
        *(uint*)ev = EpollIn;
        *(ulong*)(ev + DataOffset) = (ulong)token;
        if (EpollCtl(_fd, EpollCtlAdd, (int)fd, ev) != 0)
        {
            throw new InvalidOperationException($"epoll_ctl failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> and writes the tokens of the readable sockets.</summary>
    public unsafe int Wait(Span<int> tokens, int timeoutMs)
    {
        fixed (byte* events = _events)
        {
            var count = EpollWait(_fd, events, Math.Min(tokens.Length, _events.Length / Stride), timeoutMs);
            if (count < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return errno == 4 ? 0 : throw new InvalidOperationException($"epoll_wait failed: errno {errno}"); // 4: EINTR
            }

            for (var i = 0; i < count; i++)
            {
                tokens[i] = (int)*(ulong*)(events + (i * Stride) + DataOffset);
            }

            return count;
        }
    }

    public void Dispose() => _ = Close(_fd);

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static unsafe partial int EpollCtl(int epfd, int op, int fd, byte* ev);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static unsafe partial int EpollWait(int epfd, byte* events, int maxEvents, int timeout);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
