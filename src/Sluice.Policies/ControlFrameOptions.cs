namespace Sluice.Policies;

/// <summary>The <c>frames</c> option of the policies that may see control frames (<c>script</c>, <c>log</c>).</summary>
internal static class ControlFrameOptions
{
    /// <summary>The names a <c>frames</c> list takes, in the gateway file's spelling.</summary>
    public static ControlFrames Parse(IReadOnlyList<string>? frames)
    {
        var result = ControlFrames.None;
        if (frames is null)
        {
            return result;
        }

        foreach (var frame in frames)
        {
            result |= FrameOf(frame);
        }

        return result;
    }

    public static IEnumerable<PolicyOptionError> Validate(IReadOnlyList<string>? frames)
    {
        if (frames is null)
        {
            yield return new("frames", "must be a list of ping, pong and close (or left out)");
            yield break;
        }

        for (var i = 0; i < frames.Count; i++)
        {
            if (FrameOf(frames[i]) == ControlFrames.None)
            {
                yield return new($"frames[{i}]", $"'{frames[i]}' is not a control frame: use ping, pong or close");
            }
        }
    }

    private static ControlFrames FrameOf(string? name) => name switch
    {
        "ping" => ControlFrames.Ping,
        "pong" => ControlFrames.Pong,
        "close" => ControlFrames.Close,
        _ => ControlFrames.None,
    };
}
