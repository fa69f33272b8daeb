#!/usr/bin/env bash
# How the real encoded files here were made (Debian 12's ffmpeg 5.1 with libmp3lame, libvorbis
# and its own FLAC encoder). Every file is the same 1.2-s stereo tone at 44.1 kHz: the left
# channel 0.5·sin(2π·440·t), the right 0.25·sin(2π·660·t). The tests in ../audio.rs check the
# decoded audio against that formula, not against a decode by the code under test.
set -euo pipefail
cd "$(dirname "$0")"
tone=(-f lavfi -i "aevalsrc=0.5*sin(2*PI*440*t)|0.25*sin(2*PI*660*t):s=44100:d=1.2")
ffmpeg -v error -y "${tone[@]}" -map_metadata -1 -c:a flac -sample_fmt s16 tone.flac
ffmpeg -v error -y "${tone[@]}" -map_metadata -1 -c:a libmp3lame -b:a 128k tone.mp3
ffmpeg -v error -y "${tone[@]}" -map_metadata -1 -c:a libvorbis -q:a 4 tone.ogg
# A video with sound, to be refused as audio and read as video by ffmpeg: 16 frames of 40x30.
ffmpeg -v error -y -f lavfi -i "testsrc=s=40x30:r=8:d=2" "${tone[@]}" -map_metadata -1 -c:v libx264 -pix_fmt yuv420p -c:a aac -b:a 64k -shortest clip.mp4
