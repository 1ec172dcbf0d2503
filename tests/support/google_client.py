"""The official google-cloud-speech client as a script (``python -c CLIENT ADDRESS RAW RATE``).

It runs in a subprocess of its own (it registers the same protobuf message names as our
generated code), talks to the server on ADDRESS over a plain channel with anonymous
credentials, runs ``recognize`` and ``streaming_recognize`` on the raw LINEAR16 file RAW and
prints what it got as JSON.
"""

CLIENT = r"""
import json, sys
import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import speech_v1 as speech
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport

address, audio_path, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
audio = open(audio_path, "rb").read()
channel = grpc.insecure_channel(address)
client = speech.SpeechClient(
    transport=SpeechGrpcTransport(channel=channel, credentials=AnonymousCredentials())
)
config = speech.RecognitionConfig(
    encoding=speech.RecognitionConfig.AudioEncoding.LINEAR16,
    sample_rate_hertz=rate,
    language_code="en-US",
    enable_word_time_offsets=True,
    enable_word_confidence=True,
)

def words(alt):
    return [[w.word, w.start_time.total_seconds(), w.end_time.total_seconds(), w.confidence]
            for w in alt.words]

out = {}
response = client.recognize(config=config, audio=speech.RecognitionAudio(content=audio))
out["recognize"] = [
    {"transcript": r.alternatives[0].transcript, "words": words(r.alternatives[0])}
    for r in response.results
]
step = rate // 10 * 2
requests = (
    speech.StreamingRecognizeRequest(audio_content=audio[i : i + step])
    for i in range(0, len(audio), step)
)
streaming = speech.StreamingRecognitionConfig(config=config, interim_results=True)
out["streaming"] = [
    {
        "is_final": r.is_final,
        "stability": r.stability,
        "transcript": r.alternatives[0].transcript,
        "words": words(r.alternatives[0]),
        "end": r.result_end_time.total_seconds(),
    }
    for response in client.streaming_recognize(config=streaming, requests=requests)
    for r in response.results
]
try:
    bad = speech.RecognitionConfig(encoding=speech.RecognitionConfig.AudioEncoding.MP3,
                                   sample_rate_hertz=rate, language_code="en-US")
    client.recognize(config=bad, audio=speech.RecognitionAudio(content=audio))
    out["bad"] = None
except Exception as err:
    out["bad"] = type(err).__name__
print(json.dumps(out))
"""
