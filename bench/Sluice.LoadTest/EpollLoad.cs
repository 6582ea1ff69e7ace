using System.Diagnostics;
using System.Text;

namespace Sluice.LoadTest;

/// <summary>
/// The closed-loop echo load on one thread: every connection is a <see cref="RawWebSocket"/> read through
/// <see cref="Epoll"/>, keeps its messages in flight, checks each echo byte for byte and times it, and sends the next
/// message as an echo arrives. One thread with blocking sockets costs the load side a fraction of what a
/// ClientWebSocket and two async loops per connection cost: on two cores the load generator shares its core with the
/// echo backend, and the cheaper it is, the later the load side saturates, so that throughput ratios between proxies
/// measure the proxies. permessage-deflate runs stay on ClientWebSocket (<see cref="LoadGenerator"/>).
/// </summary>
internal static class EpollLoad
{
    public static LoadRun Run(Uri url, int connections, int size, int inflight, bool redacted, string shape, (string Name, string Value)? header,
        TimeSpan warmup, TimeSpan duration, int? pid, int? backendPid)
    {
        var sockets = new RawWebSocket[connections];
        try
        {
            Parallel.For(0, connections, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i => sockets[i] = RawWebSocket.Connect(url, header));
        }
        catch (AggregateException ex)
        {
            foreach (var socket in sockets)
            {
                socket?.Dispose();
            }

            return LoadRun.Failed(ex.InnerExceptions[0].Message);
        }

        using var epoll = new Epoll(1024);
        var connectionsState = new Connection[connections];
        for (var i = 0; i < connections; i++)
        {
            sockets[i].ClearReceiveTimeout();
            epoll.Add(sockets[i].Handle, i);
            connectionsState[i] = new Connection(inflight, size);
        }

        var run = new LoadRun();
        var latencies = new List<int>(1 << 20);
        var measuring = false;
        var sending = true;
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        var measureTo = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long drainUntil = 0;
        CpuWindow? window = null;
        // The proxy's CPU seconds and the round trips so far, once a second of the measured window (see PerSecondCost).
        var samples = new List<(double CpuSeconds, int RoundTrips)>();
        var nextSample = measureFrom;
        for (var i = 0; i < connections; i++)
        {
            try
            {
                for (var m = 0; m < inflight; m++)
                {
                    Send(sockets[i], connectionsState[i], i, size, shape, measuring);
                }
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
            {
                run.Error($"connection {i}: {ex.Message}");
                sockets[i].Dispose();
            }
        }

        Span<int> ready = stackalloc int[256];
        var expected = new byte[size];
        while (true)
        {
            var now = Stopwatch.GetTimestamp();
            if (!measuring && sending && now >= measureFrom)
            {
                window = CpuWindow.Start(pid, backendPid);
                measuring = true;
                run.MeasureStarted = now;
            }

            if (measuring && now >= nextSample && ProcStat.Read(pid) is { } proxy)
            {
                samples.Add((proxy.CpuSeconds, latencies.Count));
                nextSample += Stopwatch.Frequency;
            }

            if (measuring && now >= measureTo)
            {
                measuring = false;
                sending = false;
                run.Cpu = window!.Stop();
                run.Seconds = Stopwatch.GetElapsedTime(run.MeasureStarted, now).TotalSeconds;
                run.RoundTrips = latencies.Count;
                drainUntil = now + (5 * Stopwatch.Frequency);
            }

            if (!sending && (now >= drainUntil || connectionsState.All(c => c.InFlight == 0)))
            {
                break;
            }

            var readable = epoll.Wait(ready, timeoutMs: 1);
            for (var r = 0; r < readable; r++)
            {
                var index = ready[r];
                var socket = sockets[index];
                var connection = connectionsState[index];
                if (socket.Closed || !socket.Fill())
                {
                    if (sending)
                    {
                        run.Error($"connection {index}: the server closed the connection");
                    }

                    // Closing the descriptor takes it out of the epoll set; what it had in flight counts as lost.
                    socket.Dispose();
                    continue;
                }

                try
                {
                    Receive(socket, connection, index, size, redacted, shape, expected, latencies, run, measuring, sending);
                }
                catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
                {
                    // One broken connection (a reset, a send that timed out, a frame the client refuses) is an error of
                    // the run, and what it had in flight counts as lost; the others go on.
                    run.Error($"connection {index}: {ex.Message}");
                    socket.Dispose();
                }
            }
        }

        run.Lost = connectionsState.Sum(c => c.MeasuredInFlight);
        run.Latencies = latencies;
        run.PerSecondCpuUs = PerSecondCost(samples);
        foreach (var socket in sockets)
        {
            socket.Dispose();
        }

        return run;
    }

    /// <summary>
    /// The proxy's CPU per round trip in each whole second of the window, in microseconds. This VM's cores switch
    /// between two speeds about 1.7x apart every few seconds to minutes, each core on its own (docs/benchmarks.md,
    /// "Core probes"): a slow core 0 makes the proxy's work cost more, a slow core 1 starves it of work. The median of
    /// these is the run's figure: a spell that covers less than half the window no longer moves it, where it moved
    /// the figure over the whole window in proportion. A proxy's CPU time is counted in ticks of 10 ms, about 1% of a
    /// second at the load these runs put on it.
    /// </summary>
    private static List<double> PerSecondCost(List<(double CpuSeconds, int RoundTrips)> samples)
    {
        var costs = new List<double>(samples.Count);
        for (var i = 1; i < samples.Count; i++)
        {
            var roundTrips = samples[i].RoundTrips - samples[i - 1].RoundTrips;
            if (roundTrips > 0)
            {
                costs.Add((samples[i].CpuSeconds - samples[i - 1].CpuSeconds) * 1e6 / roundTrips);
            }
        }

        return costs;
    }

    private static void Receive(RawWebSocket socket, Connection connection, int index, int size, bool redacted, string shape, byte[] expected,
        List<int> latencies, LoadRun run, bool measuring, bool sending)
    {
        var at = Stopwatch.GetTimestamp();
        while (socket.TryTakeMessage(out var opcode, out var payload))
        {
            if (opcode is not (0x1 or 0x2))
            {
                continue;
            }

            if (!connection.TryTake(out var sequence, out var started, out var measured))
            {
                run.Mismatch("an echo nobody sent");
                continue;
            }

            var expectedLength = Payload.Write(expected, sequence, index, size, redacted, shape);
            if (!payload.SequenceEqual(expected.AsSpan(0, expectedLength)))
            {
                run.Mismatch($"echo {sequence} differs: {Encoding.UTF8.GetString(payload[..Math.Min(payload.Length, 200)])}");
            }

            if (measured && measuring)
            {
                latencies.Add((int)Stopwatch.GetElapsedTime(started, at).TotalMicroseconds);
            }

            if (sending)
            {
                Send(socket, connection, index, size, shape, measuring);
            }
        }
    }

    private static void Send(RawWebSocket socket, Connection connection, int index, int size, string shape, bool measured)
    {
        var sequence = connection.NextSequence++;
        var length = Payload.Write(connection.SendBuffer, sequence, index, size, redacted: false, shape);
        connection.Add(sequence, Stopwatch.GetTimestamp(), measured);
        socket.SendText(connection.SendBuffer.AsSpan(0, length));
    }

    /// <summary>One connection's messages in flight, oldest first: an echo answers the oldest (a WebSocket keeps order).</summary>
    private sealed class Connection(int inflight, int size)
    {
        private readonly (long Sequence, long Started, bool Measured)[] _pending = new (long, long, bool)[inflight];
        private int _head;

        public byte[] SendBuffer { get; } = new byte[size];

        public long NextSequence;

        public int InFlight { get; private set; }

        public int MeasuredInFlight => Enumerable.Range(0, InFlight).Count(i => _pending[(_head + i) % _pending.Length].Measured);

        public void Add(long sequence, long started, bool measured)
        {
            _pending[(_head + InFlight) % _pending.Length] = (sequence, started, measured);
            InFlight++;
        }

        public bool TryTake(out long sequence, out long started, out bool measured)
        {
            if (InFlight == 0)
            {
                (sequence, started, measured) = default((long, long, bool));
                return false;
            }

            (sequence, started, measured) = _pending[_head];
            _head = (_head + 1) % _pending.Length;
            InFlight--;
            return true;
        }
    }
}

/// <summary>What an epoll load run measured.</summary>
internal sealed class LoadRun
{
    public long MeasureStarted;

    public double Seconds;

    public long RoundTrips;

    public CpuShares? Cpu;

    public List<int> Latencies = [];

    /// <summary>The proxy's CPU per round trip in each whole second of the window, in microseconds.</summary>
    public List<double> PerSecondCpuUs = [];

    public int Errors;

    public int Mismatches;

    public int Lost;

    public string? FirstError;

    public static LoadRun Failed(string error) => new() { Errors = 1, FirstError = error };

    public void Error(string message)
    {
        Errors++;
        FirstError ??= message;
    }

    public void Mismatch(string message)
    {
        Mismatches++;
        FirstError ??= message;
    }
}
