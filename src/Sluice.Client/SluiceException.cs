namespace Sluice.Client;

/// <summary>An error answered by the gateway (<c>{"error":{"policy","status","message"}}</c>) or met by the client.</summary>
public sealed class SluiceException : Exception
{
    /// <summary>Initializes a new instance.</summary>
    public SluiceException()
    {
    }

    /// <summary>Initializes a new instance with a message.</summary>
    /// <param name="message">The message.</param>
    public SluiceException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new instance with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public SluiceException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    internal SluiceException(string message, int? status, string? policy, string? operation, string? topic)
        : base(message)
    {
        Status = status;
        Policy = policy;
        Operation = operation;
        Topic = topic;
    }

    /// <summary>Gets the status the gateway answered (400, 403, 429, 503); null for an error of the client.</summary>
    public int? Status { get; }

    /// <summary>Gets the policy that answered (<c>pubsub</c>, <c>rate-limit</c>...).</summary>
    public string? Policy { get; }

    /// <summary>Gets the operation the answer was matched to (<c>subscribe</c>, <c>publish</c>...), when known.</summary>
    public string? Operation { get; }

    /// <summary>Gets the topic of that operation, when known.</summary>
    public string? Topic { get; }
}
